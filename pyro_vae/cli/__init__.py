"""The ``pyro-vae`` command line (entry point :func:`main`), generated from registries.

* :mod:`~pyro_vae.cli.main`: the parser built from :data:`COMMANDS`, and ``main``;
* :mod:`~pyro_vae.cli.commands`: the registry of subcommands (:func:`register_command`);
* :mod:`~pyro_vae.cli.args`: bounded number types and the flags several subcommands share;
* :mod:`~pyro_vae.cli.errors`: the one line printed for an error or a Ctrl-C, and the exit status;
* :mod:`~pyro_vae.cli.reports`: what ``train``, ``evaluate`` and ``plot`` print and write of a run;
* one module per subcommand (``graph`` a family): ``train``, ``evaluate``, ``plot``, ``variance``,
  ``reproduce``, ``structures``, ``benchmark``, ``graph``, ``probe``.

Errors end the command with one line and an exit status from one table,
:data:`~pyro_vae.cli.errors.EXIT_STATUS`: 2 for a usage error (a bad flag or value), 1 for a
failure at run time (a missing checkpoint, a data set not found, a diverged run, ...); 130
after Ctrl-C and 143 after SIGTERM. The commands that take a while draw a progress bar on
stderr when it is a terminal (``--no-progress``: none).

Each subcommand's module imports what its work needs (experiments, plotting,
torchvision, torch_geometric) inside its functions, so that ``pyro-vae --help``
loads none of them (``pyro-vae benchmark --startup`` measures it).
"""

# importing the subcommands' modules registers them, in the order of `pyro-vae --help`
from pyro_vae.cli import train, evaluate, plot, variance, reproduce, structures, benchmark, graph, probe  # noqa: F401, E402, I001
from pyro_vae.cli.commands import COMMANDS, Command, register_command
from pyro_vae.cli.main import build_parser, main

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register_command"]
