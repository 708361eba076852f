"""Argument helpers shared by the subcommands: bounded number types and the common flags.

Each numeric flag declares its bound where it is defined, as its argparse
``type`` (``type=positive_int``, ``type=at_least(0)``, ``type=positive_float``),
so a bad value is refused while parsing, in one line naming the flag
(``--z-dim must be at least 1, got 0``), before any work starts.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import torch

from pyro_vae.data import DATASETS, USER_DATASET
from pyro_vae.models import MODELS
from pyro_vae.registry import Registry
from pyro_vae.training.config import PRESETS, RENAMED_KEYS, TrainConfig, model_default

#: ``TrainConfig``'s default of each field, for the help of the flags that set one.
CONFIG_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in fields(TrainConfig)
}


def model_default_help(name: str) -> str:
    """The help's default of a field a config takes from its model (:data:`~pyro_vae.training.config.MODEL_DEFAULTED`)."""
    value = model_default("vae", name)
    return f"default: the model's own, {' '.join(map(str, value)) if isinstance(value, tuple) else value} for vae"


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = at_least(1)


def _finite_float(bound: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {value}")
        return value

    parse.__name__ = f"finite number {bound}"
    return parse


positive_float = _finite_float("> 0", lambda value: value > 0)
non_negative_float = _finite_float(">= 0", lambda value: value >= 0)
fraction = _finite_float("in [0, 1)", lambda value: 0 <= value < 1)


class _FloatNames(ast.NodeTransformer):
    """``nan`` and ``inf`` (any case, signed, inside tuples and lists too) as the floats they name."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id.lower() in ("nan", "inf"):
            return ast.copy_location(ast.Constant(float(node.id)), node)
        return node


def literal(text: str) -> object:
    """``text`` as a Python literal (``0.9``, ``(0.9, 0.999)``, ``True``, ``nan``, ``-inf``, ``1e400``
    the float inf), else the plain string ``text``."""
    try:
        return ast.literal_eval(_FloatNames().visit(ast.parse(text.strip(), mode="eval")))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a Python name as KEY; VALUE a Python literal (:func:`literal`: ``nan`` and
    ``inf`` are floats), else a plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a Python name as KEY, got {text!r}")
    return key, literal(value)


_CUDA = re.compile(r"^cuda(:(\d+))?$")


def resolve_device(name: str) -> str:
    """The device a ``--device`` value names: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``
    (CUDA if available, else the CPU); anything else, or CUDA where there is none, is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    match = _CUDA.match(name)
    if match is None:
        raise ValueError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if match.group(2) is not None and int(match.group(2)) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar (read by :func:`show_progress`)."""
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="draw no progress bar (default: a bar on stderr when stderr is a terminal, none otherwise)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether the command draws its progress bars: not ``--no-progress``, and stderr is a terminal
    (a bar redrawn with carriage returns is noise in a log file or a pipe)."""
    return args.progress and sys.stderr.isatty()


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")


def add_num_samples(p: argparse.ArgumentParser, default: int, what: str = "per test image") -> None:
    """``-k`` / ``--num-samples``: the importance samples K of an evaluation (``args.num_samples``)."""
    p.add_argument(
        "-k",
        "--num-samples",
        dest="num_samples",
        type=positive_int,
        default=default,
        help=f"importance samples K {what} (default {default})",
    )


def add_pass_sizes(p: argparse.ArgumentParser, batch_help: str) -> None:
    """Evaluation passes: ``--batch-size`` images x ``--chunk-size`` importance samples each."""
    p.add_argument("--batch-size", type=positive_int, default=100, help=batch_help)
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=500,
        help="importance samples per pass (default 500; larger passes pay Pyro's tracing less often, "
        "e.g. 5000 on a GPU)",
    )


#: The help of :func:`add_data_file`'s ``--data``.
DATA_FILE_HELP = (
    "the data file (or image folder) a run trained with `train --data FILE` was trained on; its "
    "fingerprint must match the checkpoint's (default: the run's --dataset)"
)


def add_data_file(p: argparse.ArgumentParser, help: str = DATA_FILE_HELP) -> None:
    """``--data FILE``: the user's own data (by default: the data a run was trained on, ``train --data FILE``)."""
    p.add_argument("--data", type=Path, metavar="FILE", help=help)


def data_file(args: argparse.Namespace) -> object:
    """The data ``--data`` names, read (``None`` without the flag)."""
    from pyro_vae.data import read_data

    return None if args.data is None else read_data(args.data)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--threads``, ``--flush-denormal``, ``--data-dir`` and ``--device``."""
    add_threads(p)
    p.add_argument(
        "--flush-denormal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flush denormal floats (below 1.2e-38 in float32) to zero on the CPU for the command "
        "(default: on). Without it, a CPU step slows down as training drives values into that "
        "range (M2's q(y|x) once confident: twice the time per step, docs/results.md). "
        "--no-flush-denormal keeps IEEE gradual underflow, e.g. to continue bit for bit a run "
        "started without the flush",
    )
    p.add_argument(
        "--data-dir", help="folder with MNIST/raw, FashionMNIST/raw, frey/ (default: $PYRO_VAE_DATA, else download)"
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA if there is one, else the CPU)"
    )


def add_choice(p: argparse.ArgumentParser, flag: str, registry: Registry, default: str, **kwargs) -> None:
    """``--flag NAME`` with the registry's names as choices, their help lines and ``default`` (what a
    flag not given means, in words) as help."""
    p.add_argument(flag, choices=registry.names(), help=f"{registry.describe()} (default: {default})", **kwargs)


def read_config_file(path: Path) -> dict:
    """The settings in ``path``: a JSON object of ``TrainConfig``'s fields (a run's ``config.json``,
    old names of :data:`~pyro_vae.training.config.RENAMED_KEYS` included); an entry of another
    name is refused, naming it."""
    try:
        values = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {path} is not JSON: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} holds a {type(values).__name__}, not a JSON object of TrainConfig's fields")
    unknown = sorted(set(values) - set(CONFIG_DEFAULTS) - set(RENAMED_KEYS))
    if unknown:
        raise ValueError(f"--config {path}: unknown entries {unknown} (not fields of TrainConfig)")
    return values


def settings_given(args: argparse.Namespace, option_flags: tuple[str, ...]) -> dict[str, Any]:
    """The ``TrainConfig`` settings given on the command line: each flag named as a field and given,
    each ``--X-option KEY=VALUE`` list of ``option_flags`` (``X``) as the dict ``X_options``, and
    ``dataset`` = the user's data for ``--data FILE`` (refused beside another ``--dataset``)."""
    given = {k: v for k, v in vars(args).items() if k in CONFIG_DEFAULTS and v is not None}
    for flag in option_flags:
        if getattr(args, f"{flag}_option"):
            given[f"{flag}_options"] = dict(getattr(args, f"{flag}_option"))
    if getattr(args, "data", None) is not None:
        if given.get("dataset", USER_DATASET) != USER_DATASET:
            raise ValueError(f"--data {args.data} and --dataset {given['dataset']} both name the data; give one")
        given["dataset"] = USER_DATASET
    return given


def add_program_arguments(p: argparse.ArgumentParser, config_help: str) -> None:
    """``--config FILE`` (help ``config_help``), ``--preset``, ``--model``, ``--model-option KEY=VALUE``
    and ``--dataset``: the flags that choose the program and its data (read by :func:`settings_given`)."""
    d = CONFIG_DEFAULTS
    p.add_argument("--config", type=Path, metavar="FILE", help=config_help)
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="paper: AEVB MNIST setting; iwae: Burda et al. 784-200-200-50; "
        "kipf: Kipf & Welling's graph autoencoder (GCN 32-16, Adam 0.01, 200 epochs); sbn-linear, "
        "sbn-nonlinear: the discrete-estimator papers' sigmoid belief networks (200 binary units, linear "
        "or two tanh layers of 200) (default: none)",
    )
    add_choice(p, "--model", MODELS, d["model"])
    add_option_flag(
        p,
        "model",
        "an option of the model's constructor, e.g. --model-option num_components=10 (repeatable; "
        "default: the model's own defaults)",
    )
    add_choice(p, "--dataset", DATASETS, d["dataset"])


def add_option_flag(p: argparse.ArgumentParser, name: str, help: str) -> None:
    """``--NAME-option KEY=VALUE``, repeatable, kept as the list ``NAME_option`` of pairs
    (:func:`settings_given` makes it the config's dict ``NAME_options``)."""
    p.add_argument(
        f"--{name}-option", dest=f"{name}_option", type=key_value, action="append", metavar="KEY=VALUE", help=help
    )
