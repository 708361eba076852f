"""The registry of subcommands: each registers the builder of its flags and the function it runs.

A subcommand (an experiment included) is one module that calls
:func:`register_command`; the parser is generated from :data:`COMMANDS`, so a
new one does not edit the parser. A module named with ``pyro-vae --import
MODULE`` may register its own. ``add_arguments`` runs only when the
subcommand is parsed (or its ``--help`` shown): imports that only its flags
need (an experiment's catalogue) go inside it, and those of its work inside
``run``, so that ``pyro-vae --help`` loads neither.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pyro_vae.registry import Registry


@dataclass
class Command:
    """A ``pyro-vae`` subcommand.

    :param add_arguments: adds the subcommand's flags to its parser.
    :param run: does the work, given the parsed arguments (``None`` for a family whose
        own subcommands set ``func``, as ``graph table`` does).
    :param distributed: whether it also runs on several processes under torchrun.
    """

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None] | None
    distributed: bool = False


#: The subcommands by name (``pyro-vae NAME``): :func:`register_command` adds one.
COMMANDS: Registry[Command] = Registry("command")


def register_command(
    name: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], None] | None,
    *,
    help: str,
    distributed: bool = False,
) -> Command:
    """Register the subcommand ``pyro-vae NAME`` (``help``: its line in ``pyro-vae --help``)."""
    return COMMANDS.register(name, Command(add_arguments, run, distributed), help=help)


def machine() -> str:
    """One line naming the machine, for reports."""
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}"
