"""What ``--resume`` means: the checkpoint's config is the source of truth.

``config.json`` is a copy of the config for people and tools to read; it is
rewritten (atomically) at every start and may be missing or damaged without
harm. Resuming takes every setting from ``checkpoint.pt`` itself:

* ``epochs`` may be given: the run continues up to that many epochs. Fewer than
  the epochs already done is refused (a run cannot be shortened; evaluate a
  ``--keep-every`` snapshot instead); the same number trains nothing.
* Any other setting given, by a flag or a ``--preset``, must equal the
  checkpoint's; otherwise one error names every field that differs, with both
  values. Continuing with other settings would silently make a different run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint
from pyro_vae.training.config import PRESETS, TrainConfig, flag
from pyro_vae.training.folder import CHECKPOINT


def resume_config(run_dir: str | Path, given: dict[str, Any], preset: str | None = None) -> TrainConfig:
    """The config to resume ``run_dir`` with, from its checkpoint and the settings ``given``
    (``TrainConfig`` field names, e.g. the CLI's flags) and ``preset`` (a name in ``PRESETS``)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: nothing to resume in {run_dir}")
    state = load_checkpoint(path)
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from None
    done = state["epoch"]
    requested = dict(PRESETS[preset]) if preset else {}
    source = {name: f"--preset {preset}" for name in requested}
    requested.update(given)
    source.update({name: flag(name) for name in given})
    epochs = requested.pop("epochs", saved.epochs)
    # compared as given, before any check of the combination: a setting that differs is the reason
    # to refuse, even where it would also not go with the run's other settings
    normalized = {name: _normalized(value, getattr(saved, name)) for name, value in requested.items()}
    differ = [
        f"{name} ({source[name]} {value!r}, the run has {getattr(saved, name)!r})"
        for name, value in normalized.items()
        if value != getattr(saved, name)
    ]
    if differ:
        raise ValueError(
            f"cannot resume {run_dir} with other settings: {'; '.join(differ)}. --resume takes every setting "
            "from the checkpoint; drop these flags, or start a new run in another --run-dir"
        )
    if epochs < done:
        raise ValueError(
            f"--epochs {epochs} is fewer than the {done} epochs {run_dir} has already run; --resume continues "
            f"a run and cannot shorten it (ask for at least {done}, or evaluate a kept snapshot with "
            "`pyro-vae evaluate --checkpoint`)"
        )
    return dataclasses.replace(saved, epochs=epochs)


def _normalized(value: Any, saved: Any) -> Any:
    """``value`` as the config holds it (a list given for a tuple field is a tuple)."""
    return tuple(value) if isinstance(saved, tuple) and isinstance(value, list) else value
