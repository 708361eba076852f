"""Atomic, verified checkpoints of a training run.

A checkpoint is one ``torch.save`` file (a zip archive), serialized in memory
and written to a temporary name in the same folder, then moved into place with
``os.replace`` (:func:`pyro_vae.files.atomic_write_bytes`), so a
crash mid-write never leaves a truncated checkpoint behind: the previous one
stays intact, and a full disk is reported as the ``OSError`` it is.

Loading verifies the CRC-32 of every member of the archive before unpickling
(``weights_only=True``): ``torch.load`` does not, so a flipped byte inside a
tensor would otherwise load as a silently wrong weight. Then every field is
checked against the checkpoint's schema (:func:`check_schema`: the epoch a
non-negative int, the metrics a list of rows, the RNG states byte tensors of
torch's sizes, ...), and on resume the optimizer state against the parameters it
steps (:func:`load_algorithm_state`: groups, parameters and each state
tensor's shape) before torch's optimizer sees it: a CRC-valid but hand-made or
mixed-up file is one :class:`CheckpointError` naming the field, never a
``KeyError`` or a crash inside a fused optimizer kernel.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyro_vae.files import atomic_write_bytes
from pyro_vae.training.process import PROCESS_SETTINGS
from pyro_vae.validation import check_device

FORMAT = "pyro_vae.training.checkpoint/1"
REQUIRED_KEYS = ("format", "config", "epoch", "model", "estimator", "algorithm", "rng", "metrics")
#: Entries renamed since the format was first written, old name -> new; :func:`load_checkpoint`
#: reads a checkpoint that uses an old name (``optimizer`` held the whole algorithm's state).
RENAMED_KEYS = {"optimizer": "algorithm"}
#: The random generators a checkpoint restores by default, the training loop's: torch's global RNG and the data order's.
GENERATORS = ("torch", "data")
#: The checkpoint entry of the SHA-256 of a user's data (:func:`pyro_vae.data.data_fingerprint`), absent for named data sets.
DATA_FINGERPRINT = "data_fingerprint"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt or not a pyro_vae checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete zip archive whose
    members all match their CRC-32 (this catches truncation and flipped bytes)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: the data of {bad!r} fail their CRC check "
            "(flipped or overwritten bytes); use another checkpoint"
        )


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    generators: tuple[str, ...] = ("torch",),
) -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint`, or raise :class:`CheckpointError`;
    ``generators`` name the RNG states its ``rng`` entry must hold (:func:`check_schema`): torch's,
    which every run keeps, by default; a loop that restores more asks for them (:data:`GENERATORS`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    device = check_device(map_location)  # a bad device is the caller's error, not a corrupt checkpoint
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro_vae checkpoint (expected format {FORMAT!r})")
    for old, new in RENAMED_KEYS.items():
        if old in state and new not in state:
            state[new] = state.pop(old)
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}")
    check_schema(state, path, generators)
    return state


def _bad(path: str | os.PathLike, field: str, expected: str, value: Any) -> CheckpointError:
    shown = repr(value) if not torch.is_tensor(value) else f"a tensor of shape {tuple(value.shape)}, {value.dtype}"
    return CheckpointError(
        f"checkpoint {path}: the field {field} must be {expected}, got {shown[:80]}; "
        "the file is not one pyro_vae wrote (use another checkpoint)"
    )


def _check_rng(rng: Any, field: str, path: str | os.PathLike, generators: tuple[str, ...]) -> None:
    """``{"torch": state, "data": state, "cuda": [state, ...]?}``, each of ``generators`` a CPU generator's byte state."""
    if not isinstance(rng, Mapping):
        raise _bad(path, field, "a dict of RNG states", rng)
    size = torch.get_rng_state().numel()
    for key in generators:
        value = rng.get(key)
        if not (torch.is_tensor(value) and value.dtype == torch.uint8 and tuple(value.shape) == (size,)):
            raise _bad(path, f"{field}.{key}", f"a uint8 tensor of shape ({size},) (a CPU generator's state)", value)
    cuda = rng.get("cuda", [])
    if not (isinstance(cuda, list) and all(torch.is_tensor(s) and s.dtype == torch.uint8 for s in cuda)):
        raise _bad(path, f"{field}.cuda", "a list of uint8 tensors", cuda)


def _check_state_dict(value: Any, field: str, path: str | os.PathLike) -> None:
    if not (isinstance(value, Mapping) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())):
        raise _bad(path, field, "a state dict (names to tensors)", value)


def check_schema(state: Mapping[str, Any], path: str | os.PathLike, generators: tuple[str, ...] = GENERATORS) -> None:
    """Raise :class:`CheckpointError` naming the first field of ``state`` that is not what
    :func:`save_checkpoint` writes (the optimizer's contents are checked on resume, against the model)."""
    epoch = state["epoch"]
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
        raise _bad(path, "epoch", "a non-negative int", epoch)
    if not isinstance(state["config"], dict):
        raise _bad(path, "config", "a dict", state["config"])
    metrics = state["metrics"]
    if not isinstance(metrics, list):
        raise _bad(path, "metrics", "a list of rows (dicts)", metrics)
    for i, row in enumerate(metrics):
        if not (isinstance(row, dict) and all(isinstance(k, str) for k in row)):
            raise _bad(path, f"metrics[{i}]", "a row (a dict of column names to values)", row)
    _check_state_dict(state["model"], "model", path)
    _check_state_dict(state["estimator"], "estimator", path)
    if not isinstance(state["algorithm"], dict):
        raise _bad(path, "algorithm", "a dict (the algorithm's state)", state["algorithm"])
    _check_rng(state["rng"], "rng", path, generators)
    wall = state.get("wall_seconds", 0.0)
    if not (isinstance(wall, (int, float)) and not isinstance(wall, bool) and 0 <= wall < float("inf")):
        raise _bad(path, "wall_seconds", "a finite number >= 0", wall)
    if "since_row" in state and not _is_interval(state["since_row"]):
        raise _bad(
            path, "since_row", "{'loss': a number, 'steps': an int >= 0, 'train_seconds': a number}", state["since_row"]
        )
    if "distributed" in state:
        _check_distributed(state["distributed"], path)
    if "process" in state:  # absent in checkpoints written before it was recorded
        _check_process(state["process"], path)
    fingerprint = state.get(DATA_FINGERPRINT)
    if fingerprint is not None and not (
        isinstance(fingerprint, str) and len(fingerprint) == 64 and set(fingerprint) <= set("0123456789abcdef")
    ):
        raise _bad(path, DATA_FINGERPRINT, "a SHA-256 in hex (64 characters)", fingerprint)


def data_entry(fingerprint: str | None) -> dict[str, str]:
    """The checkpoint's record of a user's data: ``{DATA_FINGERPRINT: fingerprint}``, nothing for
    a data set loaded by name (``fingerprint`` ``None``)."""
    return {} if fingerprint is None else {DATA_FINGERPRINT: fingerprint}


def check_data_fingerprint(state: Mapping[str, Any], fingerprint: str | None, path: str | os.PathLike) -> None:
    """Refuse to resume or reload the checkpoint ``state`` on data whose fingerprint
    (:func:`pyro_vae.data.data_fingerprint`) is not the one it records; a checkpoint that
    records none (a data set loaded by name, or written before fingerprints) is not checked."""
    saved = state.get(DATA_FINGERPRINT)
    if saved is not None and saved != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was trained on the data of fingerprint {saved}, and the data given "
            f"have the fingerprint {fingerprint}; pass the run's own data (or start a new run)"
        )


def _check_process(entry: Any, path: str | os.PathLike) -> None:
    """``{"jit": bool, "flush_denormal": bool, "threads": int, "device": str}``: the settings of
    :data:`~pyro_vae.training.process.PROCESS_SETTINGS` the writing process had."""
    if not isinstance(entry, Mapping):
        raise _bad(path, "process", "a dict of process settings", entry)
    for name, value in entry.items():
        if name not in PROCESS_SETTINGS:
            raise _bad(path, f"process.{name}", f"one of the process settings {PROCESS_SETTINGS.names()}", value)
        if not PROCESS_SETTINGS[name].valid(value):
            raise _bad(path, f"process.{name}", PROCESS_SETTINGS[name].expected, value)


def _is_interval(value: Any) -> bool:
    """Whether ``value`` is the training loop's interval since its last metrics row
    (:meth:`pyro_vae.training.metrics.Clock.state`)."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    return (
        isinstance(value, dict)
        and set(value) == {"loss", "steps", "train_seconds"}
        and isinstance(value["steps"], int)
        and not isinstance(value["steps"], bool)
        and value["steps"] >= 0
        and number(value["loss"])
        and number(value["train_seconds"])
    )


def _check_distributed(entry: Any, path: str | os.PathLike) -> None:
    """``{"world_size": W, "ranks": [{"rng": ..., "param_stores": [state dict, ...]}] * W}``."""
    if not isinstance(entry, Mapping):
        raise _bad(path, "distributed", "a dict", entry)
    size, ranks = entry.get("world_size"), entry.get("ranks")
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise _bad(path, "distributed.world_size", "an int >= 1", size)
    if not (isinstance(ranks, list) and len(ranks) == size):
        raise _bad(path, "distributed.ranks", f"a list of {size} per-process entries", ranks)
    for r, rank in enumerate(ranks):
        field = f"distributed.ranks[{r}]"
        if not isinstance(rank, Mapping):
            raise _bad(path, field, "a dict", rank)
        _check_rng(rank.get("rng"), f"{field}.rng", path, GENERATORS)
        stores = rank.get("param_stores")
        if not isinstance(stores, list):
            raise _bad(path, f"{field}.param_stores", "a list of state dicts", stores)
        for i, store in enumerate(stores):
            _check_state_dict(store, f"{field}.param_stores[{i}]", path)


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_module_state(module: nn.Module, state: Mapping[str, Any], what: str, path: str | os.PathLike) -> None:
    """``module.load_state_dict(state)``, or one :class:`CheckpointError` naming the mismatch.

    ``what`` names the module in the message (``"model"``, ``"estimator"``); a
    checkpoint from another architecture is told apart from a torch size-mismatch traceback.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path}: the {what} state is a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (the model has {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and torch.is_tensor(state[k]) and state[k].shape != v.shape
    ]
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append(f"shape of {_names(shapes)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {what} its config describes (another architecture?): "
            + "; ".join(problems)
        )
    check_finite_state(state, what, path)
    restore_state(module.load_state_dict, state, what, path)


def check_finite_state(state: Mapping[str, Any], what: str, path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming the tensors of ``state`` that hold NaN or infinite
    values (else the first use of the program fails in Pyro with a dump of distribution arguments)."""
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"checkpoint {path}: the {what} state holds NaN or infinite values in {_names(bad)} "
            "(written by a run that had diverged, or damaged); use another checkpoint"
        )


def restore_state(load: Callable[[Any], Any], state: Any, what: str, path: str | os.PathLike) -> None:
    """``load(state)``, turning the errors of a state that does not fit into one :class:`CheckpointError`."""
    try:
        load(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: cannot restore the {what} state: {first}") from None


def _optimizers(algorithm: Any) -> list[torch.optim.Optimizer]:
    """The torch optimizers among ``algorithm``'s attributes (and a wrapped ``algorithm``'s)."""
    found = [v for v in vars(algorithm).values() if isinstance(v, torch.optim.Optimizer)]
    inner = getattr(algorithm, "algorithm", None)
    return found + (_optimizers(inner) if inner is not None else [])


def _group_sizes(groups: Any) -> list[int] | None:
    if not (
        isinstance(groups, list) and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups)
    ):
        return None
    return [len(g["params"]) for g in groups]


def _check_optimizer(saved: Any, live: Mapping, field: str, optimizers: list, path: str | os.PathLike) -> None:
    """A saved ``torch.optim.Optimizer`` state dict against the live one's groups and the
    shapes of the parameters it steps (those of the algorithm's optimizers with the same groups)."""
    if not (isinstance(saved, Mapping) and isinstance(saved.get("state"), Mapping)):
        raise _bad(path, field, "an optimizer state dict", saved)
    sizes, expected = _group_sizes(saved.get("param_groups")), [len(g["params"]) for g in live["param_groups"]]
    if sizes is None:
        raise _bad(path, f"{field}.param_groups", "a list of parameter groups", saved.get("param_groups"))
    if len(sizes) != len(expected):
        raise CheckpointError(
            f"checkpoint {path}: {field} has {len(sizes)} parameter group(s), the model's optimizer {len(expected)} "
            "(an optimizer state from another model?)"
        )
    if sizes != expected:
        raise CheckpointError(
            f"checkpoint {path}: {field} steps {sizes} parameters per group, the model's optimizer {expected} "
            "(an optimizer state from another model?)"
        )
    shapes = [
        [tuple(p.shape) for g in opt.param_groups for p in g["params"]]
        for opt in optimizers
        if [len(g["params"]) for g in opt.param_groups] == expected
    ]
    position = {pid: i for i, pid in enumerate(p for g in saved["param_groups"] for p in g["params"])}
    for pid, entry in saved["state"].items():
        if pid not in position or not isinstance(entry, Mapping):
            raise _bad(path, f"{field}.state[{pid!r}]", "the state of a parameter of its groups", entry)
        for key, value in entry.items():
            if not torch.is_tensor(value) or value.dim() == 0:
                continue
            allowed = {s[position[pid]] for s in shapes}
            if allowed and tuple(value.shape) not in allowed:
                raise CheckpointError(
                    f"checkpoint {path}: {field}.state[{pid}].{key} has shape {tuple(value.shape)}, the parameter "
                    f"it steps {' or '.join(map(str, sorted(allowed)))} (an optimizer state from another architecture?)"
                )


def _check_tree(saved: Any, live: Any, field: str, optimizers: list, path: str | os.PathLike) -> None:
    """``saved`` against the live state ``live`` of the same algorithm: the same kinds of
    values where both have an entry, optimizer states against their parameters."""
    if isinstance(live, Mapping) and "state" in live and "param_groups" in live:
        _check_optimizer(saved, live, field, optimizers, path)
    elif isinstance(live, Mapping):
        if not isinstance(saved, Mapping):
            raise _bad(path, field, "a dict", saved)
        for key in live.keys() & saved.keys():
            _check_tree(saved[key], live[key], f"{field}.{key}", optimizers, path)
    elif isinstance(live, list):
        if not isinstance(saved, list):
            raise _bad(path, field, "a list", saved)
        for i, (s, v) in enumerate(zip(saved, live)):
            _check_tree(s, v, f"{field}[{i}]", optimizers, path)
    elif torch.is_tensor(live) and not torch.is_tensor(saved):
        raise _bad(path, field, "a tensor", saved)
    elif (
        isinstance(live, (int, float))
        and not isinstance(live, bool)
        and (not isinstance(saved, (int, float)) or isinstance(saved, bool))
    ):
        raise _bad(path, field, "a number", saved)


def load_algorithm_state(algorithm: Any, state: Any, path: str | os.PathLike, what: str = "algorithm") -> None:
    """``algorithm.load_state_dict(state)`` after checking ``state`` against the algorithm's own
    (``_check_tree``), so that an optimizer state of another architecture is one
    :class:`CheckpointError` naming the field, before torch's optimizer internals see it."""
    _check_tree(state, algorithm.state_dict(), what, _optimizers(algorithm), path)
    restore_state(algorithm.load_state_dict, state, what, path)


def rng_state(generator: torch.Generator) -> dict:
    """The RNG states a training checkpoint keeps: torch's global (and CUDA's), and the data order's ``generator``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore the states :func:`rng_state` returned (a checkpoint without ``data`` restores torch's alone)."""
    # Generator states must be CPU byte tensors, for the CUDA generators too;
    # a checkpoint loaded with ``map_location="cuda"`` has moved them.
    torch.set_rng_state(state["torch"].cpu())
    if "data" in state:  # a graph run's checkpoints before the one trainer kept torch's alone
        generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
