"""The ``pyro-vae`` command line: train, evaluate, plot, variance, reproduce, structures, benchmark, graph, probe.

Choices and their help come from the registries (models, estimators,
algorithms, data sets, optimizers, schedules, likelihoods, subcommands);
``--import MODULE`` (before the subcommand) imports a module that registers
more, e.g. a user's own model for ``pyro-vae --import mymodels train --model mine``.

``train`` and ``evaluate`` also run on several processes, launched by torchrun:
``torchrun --nproc_per_node 2 -m pyro_vae train ...``
(:mod:`pyro_vae.training.distributed`); rank 0 alone prints and writes.

The commands that take a while draw a progress bar on stderr when it is a terminal
(``--no-progress``: none); their last lines say what they wrote where.

Exit status: 0 done; 2 a usage error (a bad flag or value); 1 a failure at run time
(a missing checkpoint or run folder, a data set not found, a file that cannot be read or
written, a diverged run, a busy run folder, a failing callback, a lost peer process);
130 after Ctrl-C, 143 after SIGTERM (:data:`pyro_vae.cli.errors.EXIT_STATUS`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import torch

from pyro_vae.cli.commands import COMMANDS
from pyro_vae.cli.errors import (
    FAILURE,
    USAGE,
    USER_ERRORS,
    Terminated,
    describe_error,
    exit_status,
    interrupted_message,
    sigterm_interrupts,
)
from pyro_vae.training.distributed import launched_by_torchrun, lost_peer_message

#: A command-line word that is a negative number for Python's ``float``: -1, -.5, -1e-3, -inf, -nan.
NEGATIVE_NUMBER = re.compile(r"^-(?:(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|inf(?:inity)?|nan)$", re.IGNORECASE)

#: reST markup of the docstrings help is built from, and its plain-text replacement: a role with
#: a ``~`` keeps the last name (:func:`~a.b` -> b), one with an explicit title the title, any other
#: role its target; ``literal`` loses its backquotes.
_MARKUP = (
    (re.compile(r":[\w:]+:`~[\w.]*?(\w+)`"), r"\1"),
    (re.compile(r":[\w:]+:`([^`<]+?)\s*<[^`>]+>`"), r"\1"),
    (re.compile(r":[\w:]+:`([^`]+)`"), r"\1"),
    (re.compile(r"``([^`]+)``"), r"\1"),
)


def plain_text(rest: str) -> str:
    """``rest`` (reST, as in a docstring) with its roles and literals as plain text, for ``--help``."""
    for pattern, replacement in _MARKUP:
        rest = pattern.sub(replacement, rest)
    return rest


class UsageError(SystemExit):
    """A bad command line (exit status 2), its one line already printed."""

    code: int


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that adds its arguments on first use (parsing or help), so that
    building the ``pyro-vae`` parser runs no subcommand's builder, and whose errors are one
    line: ``pyro-vae: error: --z-dim must be at least 1, got 0``."""

    def __init__(self, *args, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments
        # argparse takes "-1e-3" and "-inf" for flags ("--lr: expected one argument"); as values they
        # reach the flag's own check, "--lr must be a finite number > 0, got -0.001"
        self._negative_number_matcher = NEGATIVE_NUMBER

    def build(self) -> CommandParser:
        """Add the arguments, once."""
        if self._add_arguments is not None:
            add, self._add_arguments = self._add_arguments, None
            add(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.build()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.build()
        return super().format_usage()

    def format_help(self) -> str:
        self.build()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        flag, _, rest = message.partition(": ")  # argparse: "argument --z-dim: must be at least 1, got 0"
        if flag.startswith("argument ") and rest.startswith("must be"):
            message = f"{flag.removeprefix('argument ')} {rest}"
        print(f"pyro-vae: error: {message}", file=sys.stderr)
        raise UsageError(USAGE)


def build_parser() -> CommandParser:
    """The parser of every registered subcommand (each one's flags added when it is used)."""
    parser = CommandParser(
        prog="pyro-vae", description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        default=[],
        help="import MODULE first (it may register models, estimators, ...); repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name in COMMANDS:
        command = COMMANDS[name]
        p = sub.add_parser(name, help=plain_text(COMMANDS.help(name)), add_arguments=command.add_arguments)
        if command.run is not None:
            p.set_defaults(func=command.run)
    return parser


def _import_plugins(argv: list[str]) -> None:
    """Import the ``--import MODULE`` modules before the parser is built, so that what
    they register appears among the choices. The current directory is searched first, as
    ``python -m`` does, so ``pyro-vae --import mymodels`` finds ``./mymodels.py``."""
    names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--import"]
    names += [arg.partition("=")[2] for arg in argv if arg.startswith("--import=")]
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"--import {name}: {err} (searched the current directory {os.getcwd()} first)") from None


@contextmanager
def flush_denormal(on: bool) -> Iterator[None]:
    """With ``on``, denormal floats are flushed to zero on the CPU inside (``torch.set_flush_denormal``),
    and torch's default, gradual underflow, is back afterwards (so a caller of :func:`main`, a
    test say, keeps its numerics)."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def main(argv: list[str] | None = None) -> int:
    """Run ``pyro-vae`` with ``argv`` (default: the process's arguments); the exit status: 0, 2 for a
    usage error and 1 for a failure at run time (:data:`~pyro_vae.cli.errors.EXIT_STATUS`; each printed
    as one line), 130 for Ctrl-C, 143 for SIGTERM."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        _import_plugins(argv)
    except ValueError as err:
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return USAGE
    try:
        args = build_parser().parse_args(argv)  # every numeric flag checked here, before any work
    except UsageError as err:
        return err.code
    try:
        if launched_by_torchrun() and not COMMANDS[args.command].distributed:
            distributed = " and ".join(name for name in COMMANDS if COMMANDS[name].distributed)
            raise ValueError(f"{args.command} runs on one process; only {distributed} run under torchrun")
        if getattr(args, "threads", None) is not None:
            torch.set_num_threads(args.threads)
        # SIGTERM says how to resume, as Ctrl-C does
        with sigterm_interrupts(), flush_denormal(getattr(args, "flush_denormal", False)):
            args.func(args)
    except USER_ERRORS as err:
        print(f"pyro-vae: error: {describe_error(err)}", file=sys.stderr)
        return exit_status(err)
    except KeyboardInterrupt as err:
        print(f"pyro-vae: {interrupted_message(args.command, getattr(args, 'run_dir', None))}", file=sys.stderr)
        return err.exit_status if isinstance(err, Terminated) else 130
    except RuntimeError as err:  # under torchrun: a peer process died
        if (line := lost_peer_message(err, args.command, getattr(args, "run_dir", None))) is None:
            raise
        print(f"pyro-vae: error: {line}", file=sys.stderr)
        return FAILURE
    return 0
