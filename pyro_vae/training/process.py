"""The settings of the training process that change float rounding, recorded in every checkpoint.

A resumed run is bit for bit the uninterrupted one only if the process that continues it
rounds as the one that started it did. Four settings of the process (not of the run: they are
no :class:`~pyro_vae.training.config.TrainConfig` field) change the rounding:

* ``jit``: the compiled step (Pyro's ``JitTrace_ELBO``) or the eager one (``--jit`` / ``--no-jit``);
* ``flush_denormal``: denormal floats flushed to zero on the CPU (``--flush-denormal``);
* ``threads``: torch's CPU threads (``--threads``), which split the sums of a matrix product;
* ``device``: the kind of device (``--device``: ``cpu`` or ``cuda``).

Every checkpoint records them (its ``process`` entry, :func:`process_settings`); a resume that
has epochs left to train compares them with the resuming process's (:func:`check_process`) and
refuses a difference in one line naming both values, unless ``allow_process_change=True``
(``--allow-process-change``) says to continue knowingly. (A finished run that is only reused,
``train_or_resume`` to its own epochs, trains nothing: it is not compared.) A checkpoint written before they were recorded holds none: there is
nothing to compare, and it resumes as it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_vae.registry import Registry


@dataclass(frozen=True)
class ProcessSetting:
    """One rounding-relevant setting of the process: ``flag(value)`` is the value as the
    command line's flag (``--no-jit``), ``valid(value)`` whether a checkpoint's value is one
    (``expected`` says which, in words)."""

    flag: Callable[[Any], str]
    valid: Callable[[Any], bool]
    expected: str


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _switch(name: str) -> Callable[[Any], str]:
    """``--name`` for True, ``--no-name`` for False."""
    return lambda on: f"--{'' if on else 'no-'}{name}"


#: The settings a checkpoint records (its ``process`` entry), in the order a refusal names them.
PROCESS_SETTINGS: Registry[ProcessSetting] = Registry("process setting")
PROCESS_SETTINGS.register(
    "jit",
    ProcessSetting(_switch("jit"), _is_bool, "True or False"),
    help="the compiled (--jit) or the eager (--no-jit) training step",
)
PROCESS_SETTINGS.register(
    "flush_denormal",
    ProcessSetting(_switch("flush-denormal"), _is_bool, "True or False"),
    help="denormal floats flushed to zero on the CPU (--flush-denormal)",
)
PROCESS_SETTINGS.register(
    "threads",
    ProcessSetting(
        lambda n: f"--threads {n}", lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 1, "an int >= 1"
    ),
    help="torch's CPU threads (--threads)",
)
PROCESS_SETTINGS.register(
    "device",
    ProcessSetting(lambda d: f"--device {d}", lambda d: isinstance(d, str) and d != "", "a device type"),
    help="the kind of device, cpu or cuda (--device)",
)


def flushes_denormals() -> bool:
    """Whether the CPU flushes denormal floats to zero just now (``torch.set_flush_denormal``):
    then 1e-39, a float32 denormal, times 1 is 0."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


def process_settings(jit: bool, device: str | torch.device) -> dict[str, Any]:
    """The rounding-relevant settings of this process (:data:`PROCESS_SETTINGS`) for a run
    trained compiled or not (``jit``) on ``device``."""
    return {
        "jit": bool(jit),
        "flush_denormal": flushes_denormals(),
        "threads": torch.get_num_threads(),
        "device": torch.device(device).type,
    }


def check_process(
    saved: Mapping[str, Any] | None, current: Mapping[str, Any], run_dir: str | Path, allow: bool = False
) -> None:
    """Raise ``ValueError`` naming every setting where ``current`` (this process's) differs from
    ``saved`` (the checkpoint's; ``None`` for a checkpoint that records none), unless ``allow``."""
    if saved is None or allow:
        return
    differ = [
        f"{PROCESS_SETTINGS[name].flag(current[name])} (the run trained with {PROCESS_SETTINGS[name].flag(saved[name])})"
        for name in PROCESS_SETTINGS
        if name in saved and saved[name] != current[name]
    ]
    if differ:
        raise ValueError(
            f"cannot resume {run_dir} with other process settings: {'; '.join(differ)}. They change the float "
            "rounding, so the continued run would not be the uninterrupted one bit for bit; give the run's flags, "
            "or add --allow-process-change (allow_process_change=True) to continue with these knowingly"
        )
