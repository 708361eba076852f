"""The ``pyro-vae`` command line (entry point :func:`main`), generated from registries.

* :mod:`~pyro_vae.cli.main`: the parser built from :data:`COMMANDS`, and ``main``;
* :mod:`~pyro_vae.cli.commands`: the registry of subcommands (:func:`register_command`);
* :mod:`~pyro_vae.cli.args`: bounded number types and the flags several subcommands share;
* :mod:`~pyro_vae.cli.errors`: the one line printed for an error or a Ctrl-C;
* one module per subcommand or family: ``train`` (train, evaluate, plot), ``variance``,
  ``benchmark``, ``reproduce``, ``structures``, ``graph``, ``probe``.

Each subcommand's module imports what its work needs (experiments, plotting,
torchvision, torch_geometric) inside its functions, so that ``pyro-vae --help``
loads none of them (``pyro-vae benchmark --startup`` measures it).
"""

# importing the subcommands' modules registers them, in the order of `pyro-vae --help`
from pyro_vae.cli import benchmark, graph, probe, reproduce, structures, train, variance  # noqa: F401, E402, I001
from pyro_vae.cli.commands import COMMANDS, Command, register_command
from pyro_vae.cli.main import build_parser, main

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register_command"]
