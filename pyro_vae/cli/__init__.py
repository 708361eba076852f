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

from pyro_vae.cli.commands import COMMANDS, Command, register_command
from pyro_vae.cli.main import build_parser, main

# the subcommands, in the order of `pyro-vae --help`
from pyro_vae.cli.train import _config_from_args, cmd_evaluate, cmd_plot, cmd_train  # noqa: I001
from pyro_vae.cli.variance import cmd_variance
from pyro_vae.cli.benchmark import cmd_benchmark
from pyro_vae.cli.reproduce import cmd_reproduce
from pyro_vae.cli.structures import cmd_structures
from pyro_vae.cli.graph import cmd_graph_table
from pyro_vae.cli.probe import cmd_probe

__all__ = [
    "COMMANDS",
    "Command",
    "_config_from_args",
    "build_parser",
    "cmd_benchmark",
    "cmd_evaluate",
    "cmd_graph_table",
    "cmd_plot",
    "cmd_probe",
    "cmd_reproduce",
    "cmd_structures",
    "cmd_train",
    "cmd_variance",
    "main",
    "register_command",
]
