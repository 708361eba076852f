"""Property-based fuzz (issue #39, "What" item 6; Hypothesis): generated ``TrainConfig`` dicts,
``pyro-vae train`` argument lists, checkpoint dicts and pretrained records each end in a valid
object or in one of the library's clear errors, one line naming the problem: never another
exception, never a value out of its range accepted silently.

Bounded and reproducible: a fixed number of examples per property, derandomized (the same
examples on every run, so a failure in CI is one to rerun), no example database on disk;
no example trains (the CLI's ``train`` is replaced by a stub that records the config it is
given), so the file runs in well under a minute on one core."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pyro_vae.cli.train as cli_train
from pyro_vae import pretrained
from pyro_vae.cli import main
from pyro_vae.data import DATASETS, DatasetNotFoundError
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.models import MODELS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.pretrained import PretrainedError, export_pretrained, load_pretrained_run
from pyro_vae.registry import Registry
from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.loop import load_run, train

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

#: What the library raises for bad input (its own classes derive from these).
CLEAR_ERRORS = (ValueError, TypeError, CheckpointError, PretrainedError, DatasetNotFoundError)

TINY = dict(dataset="synthetic", z_dim=2, hidden=(4,), batch_size=100, epochs=1)


@pytest.fixture(scope="module", autouse=True)
def no_data_files(tmp_path_factory):
    """No example reads real data or downloads: the data folder is one that does not exist
    (the synthetic data set needs none; the others fail at once, in one line)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYRO_VAE_DATA", str(tmp_path_factory.mktemp("no-data") / "none"))
        yield


#: What Python and torch say when code meets a value it did not expect: a message of this kind
#: names no bad value and no fix, so it is a traceback's message, whatever its type.
INTERNAL = re.compile(
    r"unhashable type|object has no attribute|is not subscriptable|object is not iterable|is not callable|"
    r"positional argument|unsupported operand|can't multiply sequence|not supported between instances|"
    r"invalid literal for|could not convert|index out of range|argument of type|must be real number, not|"
    r"Expected one of cpu|Trace Shapes"
)


def assert_one_clear_line(err: BaseException) -> None:
    """``err`` is one of the library's clear errors: one non-empty line of the library's own words."""
    event(f"refused: {type(err).__name__}")  # pytest --hypothesis-show-statistics counts them
    assert isinstance(err, CLEAR_ERRORS), f"{type(err).__name__}: {err}"
    text = str(err)
    assert text.strip() and "\n" not in text and not INTERNAL.search(text), f"{type(err).__name__}: {text!r}"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_numbers(options: dict) -> bool:
    """Whether every number among the values of ``options`` (and inside their tuples) is finite."""
    values = [v for value in options.values() for v in (value if isinstance(value, (tuple, list)) else [value])]
    return all(math.isfinite(v) for v in values if isinstance(v, float))


def assert_in_range(config: TrainConfig) -> None:
    """What every accepted config satisfies: each value in its range and each name registered
    (else an out-of-range value was accepted silently), and it survives its own round trip."""
    event("accepted")
    counts = ("z_dim", "num_particles", "batch_size", "epochs", "metrics_num_samples")
    assert all(_int(getattr(config, name)) and getattr(config, name) >= 1 for name in counts), config
    assert isinstance(config.hidden, tuple) and all(_int(h) and h >= 1 for h in config.hidden), config
    assert math.isfinite(config.lr) and config.lr > 0, config
    assert math.isfinite(config.weight_decay) and config.weight_decay >= 0, config
    assert config.init_std is None or 0 < config.init_std <= 1, config
    assert _int(config.kl_warmup) and 0 <= config.kl_warmup <= config.epochs, config
    assert _int(config.evals_per_decade) and config.evals_per_decade >= 0, config
    assert config.num_train is None or config.num_train >= config.batch_size, config
    assert config.num_labels is None or config.num_labels >= 1, config
    assert _int(config.labelled_per_batch) and 0 <= config.labelled_per_batch < config.batch_size, config
    assert _int(config.seed) and -(2**62) <= config.seed < 2**62, config
    for registry, name in (
        (DATASETS, config.dataset),
        (MODELS, config.model),
        (ESTIMATORS, config.estimator),
        (ALGORITHMS, config.algorithm),
        (OPTIMIZERS, config.optimizer),
        (LR_SCHEDULES, config.lr_schedule),
    ):
        assert name in registry.names(), config
    assert config.likelihood is None or config.likelihood in LIKELIHOODS.names(), config
    assert _finite_numbers(config.optimizer_options) and _finite_numbers(config.schedule_options), config
    assert TrainConfig.from_dict(dataclasses.asdict(config)) == config


# --- the values: plausible ones near each field's range, and hostile ones of any kind ------------
def _hostile(non_finite: bool) -> st.SearchStrategy:
    """Values of any kind; NaN and infinities only where ``non_finite`` (JSON has neither)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=non_finite, allow_infinity=non_finite),
        st.text(max_size=4),
        st.lists(st.integers(-2, 600), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


HOSTILE, JSON_HOSTILE = _hostile(non_finite=True), _hostile(non_finite=False)
NUMBER = st.one_of(
    st.integers(-3, 40), st.floats(-2.0, 2.0), st.sampled_from([0, 1e-3, 1e400, -1e-3, float("nan"), float("inf")])
)
OPTION_VALUES = st.one_of(NUMBER, st.sampled_from([True, False, None, "x", (0.9,), (0.9, 0.999), (0.9, float("nan"))]))


def _names(registry: Registry) -> st.SearchStrategy:
    return st.sampled_from([*registry.names(), "nope"])


def _options(keys: list[str]) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(keys), OPTION_VALUES, max_size=2)


PLAUSIBLE: dict[str, st.SearchStrategy] = {
    "dataset": st.sampled_from(["synthetic", "planted-partition", "mnist", "nope"]),
    "model": _names(MODELS),
    "estimator": _names(ESTIMATORS),
    "algorithm": _names(ALGORITHMS),
    "optimizer": _names(OPTIMIZERS),
    "lr_schedule": _names(LR_SCHEDULES),
    "likelihood": _names(LIKELIHOODS),
    "hidden": st.lists(st.integers(-1, 600), max_size=3),
    "activation": st.sampled_from(["tanh", "elu", "relu", "nope"]),
    "optimizer_options": _options(["momentum", "betas", "eps", "maximize", "foreach", "nesterov", "alpha", "lr"]),
    "schedule_options": _options(["gamma", "step_size", "eta_min", "warmup", "T_max"]),
    "estimator_options": _options(["beta", "decay"]),
    "model_options": _options(["num_components", "pseudo_init"]),
}


def _field_values(field: dataclasses.Field) -> st.SearchStrategy:
    """A field's default, a plausible value (near its range) or a hostile one."""
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    plausible = PLAUSIBLE.get(field.name)
    if plausible is None:
        plausible = NUMBER if isinstance(default, (int, float)) or default is None else st.just(default)
    return st.one_of(st.just(default), plausible, HOSTILE)


#: Each field's values, and an entry that is no field.
FIELD_VALUES = {f.name: _field_values(f) for f in dataclasses.fields(TrainConfig)} | {"unknown_entry": HOSTILE}
#: Dicts of a few entries each (the others keep their defaults), so that many are accepted and
#: each accepted one can be checked for a value out of its range.
CONFIG_DICTS = st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: FIELD_VALUES[name] for name in names})
)


@settings(FUZZ, max_examples=300)
@given(entries=st.one_of(CONFIG_DICTS, CONFIG_DICTS, CONFIG_DICTS, HOSTILE))  # a dict three times in four
def test_config_dicts_give_a_valid_config_or_one_clear_line(entries):
    try:
        config = TrainConfig.from_dict(entries)
    except Exception as err:  # noqa: BLE001  the property is about which exceptions
        assert_one_clear_line(err)
    else:
        assert_in_range(config)


# --- pyro-vae train: argument lists -> a config (train itself stubbed) or one line -------------------
class Accepted(Exception):
    """Raised by the stub of ``train`` with the config the command line built."""


def _accept(config: TrainConfig, run_dir: Path, **options) -> None:
    raise Accepted(config)


SMALL_INTEGERS = st.integers(-2, 300).map(str)  # mostly in range: the flags' own checks, then the config's
NUMERIC_TEXT = st.one_of(
    SMALL_INTEGERS,
    SMALL_INTEGERS,
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "-1",
            "-1e-3",
            "1e-3",
            "nan",
            "-nan",
            "inf",
            "-inf",
            "1e400",
            "abc",
            "",
            "3.5",
            "10000000000000000000000",
            "0x10",
            "1_000",
            "-.5",
            "2e9",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
KEY_VALUE = st.builds(
    "{}={}".format,
    st.sampled_from(["momentum", "betas", "eps", "gamma", "beta", "lr", "foo", "a b", ""]),
    st.sampled_from(
        ["-1", "0", "0.9", "nan", "inf", "(0.9,)", "(0.9, 0.999)", "True", "'x'", "1e400", "[1]", "{}", ""]
    ),
)
CHOICES = {
    "--model": _names(MODELS),
    "--dataset": st.sampled_from(["synthetic", "planted-partition", "nope"]),
    "--estimator": _names(ESTIMATORS),
    "--optimizer": _names(OPTIMIZERS),
    "--algorithm": _names(ALGORITHMS),
    "--lr-schedule": _names(LR_SCHEDULES),
    "--likelihood": _names(LIKELIHOODS),
    "--preset": st.sampled_from([*sorted(PRESETS), "nope"]),
    "--activation": st.sampled_from(["tanh", "elu", "x"]),
    "--device": st.sampled_from(["cpu", "gpu", "cuda", "cuda:0", "auto", ""]),
}
NUMERIC_FLAGS = [
    "--z-dim",
    "--init-std",
    "--num-particles",
    "--lr",
    "--weight-decay",
    "--batch-size",
    "--num-train",
    "--num-labels",
    "--labelled-per-batch",
    "--epochs",
    "--kl-warmup",
    "--evals-per-decade",
    "--metrics-num-samples",
    "--seed",
    "--split-seed",
    "-k",
    "--num-test",
    "--keep-every",
]
OPTION_FLAGS = ["--model-option", "--estimator-option", "--optimizer-option", "--schedule-option"]
SWITCHES = ["--jit", "--no-jit", "--resume", "--validate-every-step"]

FLAG = st.one_of(
    st.sampled_from(NUMERIC_FLAGS).flatmap(lambda flag: NUMERIC_TEXT.map(lambda value: [flag, value])),
    st.lists(st.one_of(SMALL_INTEGERS, NUMERIC_TEXT), min_size=1, max_size=3).map(lambda values: ["--hidden", *values]),
    st.sampled_from(sorted(CHOICES)).flatmap(lambda flag: CHOICES[flag].map(lambda value: [flag, value])),
    st.sampled_from(OPTION_FLAGS).flatmap(lambda flag: KEY_VALUE.map(lambda value: [flag, value])),
    st.sampled_from(SWITCHES).map(lambda flag: [flag]),
)


@settings(FUZZ, max_examples=200)
@given(flags=st.lists(FLAG, max_size=4))
def test_train_command_lines_give_a_valid_config_or_one_clear_line(flags):
    argv = ["train", *[word for flag in flags for word in flag], "--no-progress"]
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(cli_train, "train", _accept):
        err, out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                status = main([*argv, "--run-dir", str(Path(folder) / "run")])
        except Accepted as accepted:
            assert_in_range(accepted.args[0])
            return
    lines = err.getvalue().splitlines()
    assert status in (1, 2) and len(lines) == 1 and lines[0].startswith("pyro-vae: error: "), (argv, err.getvalue())
    assert lines[0] != "pyro-vae: error: " and not INTERNAL.search(lines[0]), lines


# --- checkpoints: a trained one, one entry changed -> a loaded run or one clear line ----------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("fuzz-run")
    train(TrainConfig(**TINY), run_dir, progress=False)
    return run_dir


def _tensor_values(tensor: torch.Tensor) -> st.SearchStrategy:
    """Tensors that could stand where ``tensor`` stands: of other shapes, dtypes, or not finite."""
    return (
        st.sampled_from(
            [
                tensor[:1].clone(),
                tensor.double(),
                tensor.long(),
                torch.full_like(tensor, float("nan")),
                torch.full_like(tensor, float("inf")),
                tensor.reshape(-1).clone(),
                torch.zeros(0),
                torch.tensor(1.0),
            ]
        )
        if tensor.is_floating_point()
        else st.sampled_from([tensor[:1].clone(), tensor.float(), torch.zeros(0)])
    )


def _changed(value: Any, draw: Any, depth: int = 0) -> Any:
    """``value`` with one part changed, removed or replaced by a hostile value (drawn with ``draw``)."""
    if isinstance(value, dict) and value and depth < 3 and draw(st.integers(0, 3)):  # mostly one level deeper
        key = draw(st.sampled_from(sorted(value, key=str)))
        if draw(st.integers(0, 4)) == 0:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: _changed(value[key], draw, depth + 1)}
    if isinstance(value, list) and value and depth < 3 and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], _changed(value[index], draw, depth + 1), *value[index + 1 :]]
    if torch.is_tensor(value) and draw(st.booleans()):
        return draw(_tensor_values(value))
    return draw(HOSTILE)


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_checkpoint_dicts_load_as_a_run_or_fail_in_one_clear_line(trained, data):
    state = _changed(load_checkpoint(trained / "checkpoint.pt"), data.draw)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / "checkpoint.pt")
        try:
            run = load_run(folder)
        except Exception as err:  # noqa: BLE001  the property is about which exceptions
            assert_one_clear_line(err)
            return
    assert_in_range(run.config)
    assert all(torch.isfinite(p).all() for p in run.program.state_dict().values() if p.is_floating_point())
    assert isinstance(run.metrics, list) and all(isinstance(row, dict) for row in run.metrics)


# --- pretrained records: an exported entry, its record changed -> a run or one clear line -----------
@pytest.fixture(scope="module")
def entry(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-pretrained")
    return export_pretrained(trained, "toy", command="pyro-vae train (fuzz)", description="fuzz", folder=folder)


def _record_changes(record: dict) -> st.SearchStrategy:
    """A changed record: an entry removed or replaced, a config field changed (the data set kept
    to those that need no files, so that no example downloads), or the record replaced whole."""
    config_values = {
        name: (st.sampled_from(["synthetic", "nope", 3]) if name == "dataset" else JSON_HOSTILE)
        for name in record["config"]
    }
    change_config = st.sampled_from(sorted(config_values)).flatmap(
        lambda name: config_values[name].map(lambda value: {**record, "config": {**record["config"], name: value}})
    )
    replace_entry = st.sampled_from(sorted(record)).flatmap(
        lambda key: JSON_HOSTILE.map(lambda value: {**record, key: value})
    )
    remove_entry = st.sampled_from(sorted(record)).map(lambda key: {k: v for k, v in record.items() if k != key})
    return st.one_of(change_config, replace_entry, remove_entry, JSON_HOSTILE)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_pretrained_records_load_as_a_run_or_fail_in_one_clear_line(entry, data):
    record = data.draw(_record_changes(json.loads(entry.read_text())))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "toy.json"
        path.write_text(json.dumps(record))
        shutil.copy(entry.with_suffix(".pt"), path.with_suffix(".pt"))
        registry = Registry("pretrained model")
        registry.register("toy", path)
        with mock.patch.object(pretrained, "PRETRAINED", registry):
            try:
                run = load_pretrained_run("toy")
            except Exception as err:  # noqa: BLE001  the property is about which exceptions
                assert_one_clear_line(err)
                return
    assert_in_range(run.config)
    assert isinstance(run.metrics, list) and all(isinstance(row, dict) for row in run.metrics)
