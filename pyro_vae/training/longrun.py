"""Long runs that survive a restart: the ``COMMAND`` file that continues a run folder.

A long run (``longruns/NAME/``) is committed as three files, overwritten in place:
``checkpoint.pt`` (the whole state: model, optimizer, RNG, metrics, config), ``metrics.csv``
and ``COMMAND``. Every training setting comes from the checkpoint on ``--resume``
(:mod:`pyro_vae.training.resume`); what the checkpoint does not hold are the flags of the
process itself, of which ``--jit``, ``--threads``, ``--flush-denormal`` and ``--device`` change the
float rounding (the checkpoint records their values, and a resume with others is refused:
:mod:`pyro_vae.training.process`).
:func:`continue_command` therefore derives the continuation from the exact command that
started the run: it keeps those process flags (and ``--data-dir``, ``--no-progress``,
``-k``, ...), drops the settings (they are the checkpoint's) and adds ``--resume``, so
on any machine, from a clean clone, the command continues the run bit for bit.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from pyro_vae.files import atomic_write_text
from pyro_vae.training.checkpoint import CheckpointError, verify_checkpoint
from pyro_vae.training.config import TrainConfig, flag
from pyro_vae.training.loop import CHECKPOINT

COMMAND = "COMMAND"
PROGRAM = ("uv", "run", "pyro-vae", "train")
# flags that name the run's settings: on --resume they come from the checkpoint
_SETTINGS = {flag(f.name) for f in dataclasses.fields(TrainConfig)} | {"--preset", "--config", "--resume", "--run-dir"}


def _flags(argv: list[str]) -> list[list[str]]:
    """``argv`` grouped as ``[flag, value, ...]`` lists, a group starting at each flag
    (``--name`` or ``-k``; a negative number such as ``-1`` is a value)."""
    groups: list[list[str]] = []
    for token in argv:
        if (token.startswith("-") and not token[1:2].isdigit()) or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def continue_command(started_with: str) -> str:
    """The command that continues the run that ``started_with`` (a ``pyro-vae train`` command
    line, as typed) started: ``uv run pyro-vae train --resume --run-dir RUN`` and the process
    flags of ``started_with``, in their order; its settings (``--epochs`` included) are dropped."""
    argv = shlex.split(started_with)
    try:
        start = argv.index("train") + 1
    except ValueError:
        raise ValueError(f"not a `pyro-vae train` command: {started_with!r}") from None
    groups = _flags(argv[start:])
    if groups and not groups[0][0].startswith("-"):
        raise ValueError(f"unexpected argument {groups[0][0]!r} in {started_with!r}")
    run_dirs = [g[1:] for g in groups if g[0] == "--run-dir"]
    if len(run_dirs) != 1 or len(run_dirs[0]) != 1:
        raise ValueError(f"a long run needs exactly one --run-dir FOLDER in its command: {started_with!r}")
    kept = [token for g in groups if g[0].split("=")[0] not in _SETTINGS for token in g]
    return shlex.join([*PROGRAM, "--resume", "--run-dir", run_dirs[0][0], *kept])


def write_command_file(started_with: str, title: str, root: str | Path = ".") -> Path:
    """Write ``RUN/COMMAND`` for the run ``started_with`` started (``--run-dir RUN``, relative
    to ``root``, the repository root): ``title`` and the start command as comments, then the
    :func:`continue_command` line. The run folder must hold a complete checkpoint."""
    line = continue_command(started_with)
    argv = shlex.split(line)
    run_dir = Path(root) / argv[argv.index("--run-dir") + 1]
    if not (run_dir / CHECKPOINT).is_file():
        raise CheckpointError(f"no checkpoint at {run_dir / CHECKPOINT}: nothing to continue yet")
    verify_checkpoint(run_dir / CHECKPOINT)
    text = (
        f"# {title}\n# Started with:\n#   {started_with}\n"
        "# Continue (every setting comes from checkpoint.pt):\n" + line + "\n"
    )
    return atomic_write_text(run_dir / COMMAND, text)


def read_command_file(run_dir: str | Path) -> list[str]:
    """The arguments of ``pyro-vae`` in the last line of ``RUN/COMMAND`` that is not a comment
    (``["train", "--resume", ...]``), for running it in-process (``pyro_vae.cli.main``)."""
    path = Path(run_dir) / COMMAND
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path} holds no command")
    argv = shlex.split(lines[-1])
    if tuple(argv[:4]) != PROGRAM:
        raise ValueError(f"{path}: the command does not start with {' '.join(PROGRAM)!r}: {lines[-1]!r}")
    return argv[3:]
