"""Pretrained weights by name: export then load is the same model (as a program and as a run),
the shipped entries are the runs they record, and what is damaged, unknown or too large is one
clear error."""

import json
from pathlib import Path

import pyro
import pytest
import torch

import pyro_vae
from pyro_vae import pretrained
from pyro_vae.cli import main
from pyro_vae.inference.classification import classification_error
from pyro_vae.pretrained import (
    MAX_BYTES,
    DataDescription,
    PretrainedError,
    export_pretrained,
    load_pretrained,
    load_pretrained_run,
    report_dir,
    resolve_run,
)
from pyro_vae.pretrained import weights as weights_file
from pyro_vae.pretrained.weights import read_weights, sha256
from pyro_vae.registry import Registry
from pyro_vae.training import load_run

COMMAND = [
    "train",
    "--dataset",
    "synthetic",
    "--z-dim",
    "2",
    "--hidden",
    "16",
    "--lr",
    "0.01",
    "--epochs",
    "2",
    "--no-progress",
    "-k",
    "5",
]


@pytest.fixture
def registry(monkeypatch):
    """An empty registry of pretrained entries for the test (the package's own stay untouched)."""
    fresh = Registry("pretrained model")
    monkeypatch.setattr(pretrained, "PRETRAINED", fresh)
    return fresh


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    pyro.set_rng_seed(0)
    assert main([*COMMAND, "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def entry(tmp_path, trained, registry):
    record = export_pretrained(trained, "toy", command=" ".join(COMMAND), description="a toy", folder=tmp_path)
    pretrained.register_pretrained(record)
    return record


def _elbo(program, x):
    pyro.set_rng_seed(1)
    with pyro.get_param_store().scope():
        return pyro.infer.Trace_ELBO(num_particles=3).loss(program.model, program.guide, x)


def test_export_then_load_is_the_same_model(entry, trained):
    record = json.loads(entry.read_text())
    assert record["command"] == " ".join(COMMAND) and record["epoch"] == 2
    assert list(record["reports"]) == ["eval-epoch0002-k5-n500"]
    assert (
        record["reports"]["eval-epoch0002-k5-n500"]["num_samples"] == 5
        and entry.with_suffix(".pt").stat().st_size == record["bytes"]
    )
    original, loaded, program = load_run(trained), load_pretrained_run("toy"), pyro_vae.load_pretrained("toy")
    assert record["data"] == DataDescription.of(original.dataset).to_dict()
    assert original.program.state_dict().keys() == loaded.program.state_dict().keys() == program.state_dict().keys()
    for (name, p), q, r in zip(
        original.program.state_dict().items(), loaded.program.state_dict().values(), program.state_dict().values()
    ):
        assert q.dtype == torch.float32 and torch.equal(p, q) and torch.equal(p, r), name
    assert loaded.metrics == original.metrics
    x = original.dataset.test[:50]
    assert _elbo(loaded.program, x) == _elbo(original.program, x) == _elbo(program, x)
    assert _elbo(resolve_run("pretrained:toy").program, x) == _elbo(resolve_run(trained).program, x)


@pytest.mark.parametrize("target, folder", [("pretrained:toy", "runs/pretrained/toy"), ("runs/a", "runs/a")])
def test_reports_of_a_pretrained_model_stay_out_of_the_package(target, folder):
    assert report_dir(target) == Path(folder)


def test_evaluate_target_pretrained_refuses_a_checkpoint(entry):
    with pytest.raises(ValueError, match="pretrained:toy has none"):
        resolve_run("pretrained:toy", checkpoint="x.pt")


def test_unknown_name_lists_the_known_ones(entry):
    with pytest.raises(
        PretrainedError,
        match="unknown pretrained model 'nope'; expected one of \\['toy'\\] or a folder written by save_pretrained",
    ):
        load_pretrained("nope")
    with pytest.raises(PretrainedError, match="unknown pretrained model 'nope'"):
        resolve_run("pretrained:nope")


def _flip_byte(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_damaged_weights_are_refused(entry, damage):
    weights = entry.with_suffix(".pt")
    if damage == "flip":
        _flip_byte(weights, weights.stat().st_size // 2)  # inside a tensor: torch.load would not notice
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()
    message = "are missing" if damage == "missing" else "are damaged: .* the record says"
    with pytest.raises(PretrainedError, match=f"pretrained weights .*toy.pt {message}"):
        load_pretrained("toy")


def _rewrite(entry, weights: object, **record_changes):
    """Replace the weights file by ``torch.save(weights)`` and record its true hash (a file the record vouches for)."""
    path = entry.with_suffix(".pt")
    torch.save(weights, path)
    record = json.loads(entry.read_text())
    data = path.read_bytes()
    record.update(bytes=len(data), sha256=sha256(data), **record_changes)
    entry.write_text(json.dumps(record))


def test_weights_of_another_kind_are_refused(entry):
    state = torch.load(entry.with_suffix(".pt"), weights_only=True)
    _rewrite(entry, [1, 2, 3])
    with pytest.raises(PretrainedError, match="is not a pyro_vae pretrained weights file"):
        load_pretrained("toy")
    _rewrite(entry, {**state, "model": {k: v.double() for k, v in state["model"].items()}})
    with pytest.raises(PretrainedError, match="are not float32 tensors"):
        load_pretrained("toy")
    config = json.loads(entry.read_text())["config"]
    _rewrite(entry, state, config={**config, "z_dim": 3})
    with pytest.raises(PretrainedError, match="does not fit the model its config describes.*shape of"):
        load_pretrained("toy")


def test_size_limit(tmp_path, trained, entry, monkeypatch):
    size = entry.with_suffix(".pt").stat().st_size
    monkeypatch.setattr(weights_file, "MAX_BYTES", size - 1)
    with pytest.raises(PretrainedError, match=f"are {size} bytes, over the limit of {size - 1}"):
        load_pretrained("toy")
    with pytest.raises(PretrainedError, match=f"weights of .* are {size} bytes in float32, over the limit"):
        export_pretrained(trained, "toy2", command="", description="", folder=tmp_path)
    assert not (tmp_path / "toy2.pt").exists()


def test_export_from_another_checkpoint_of_the_run(tmp_path, registry):
    run_dir = tmp_path / "run"
    pyro.set_rng_seed(0)
    assert main([*COMMAND, "--run-dir", str(run_dir), "--keep-every", "1"]) == 0
    kept = run_dir / "checkpoints" / "epoch-0001.pt"
    record = export_pretrained(run_dir, "first", command="", description="", folder=tmp_path, checkpoint=kept)
    saved = json.loads(record.read_text())
    assert saved["epoch"] == 1 and [row["epoch"] for row in saved["metrics"]] == [1] and saved["reports"] == {}
    assert f"checkpoint={str(kept)!r})" in saved["exported_with"]
    pretrained.register_pretrained(record)
    expected = torch.load(kept, weights_only=False)["model"]
    for name, value in load_pretrained("first").state_dict().items():
        assert torch.equal(value, expected[name].float()), name
    assert not torch.equal(load_run(run_dir).program.state_dict()[name], value)  # the last epoch differs


@pytest.mark.parametrize("name", ["", "Toy", "a/b", "pretrained:x"])
def test_export_refuses_a_name_that_is_no_file_name(tmp_path, trained, name):
    with pytest.raises(PretrainedError, match="a pretrained name is lower-case letters"):
        export_pretrained(trained, name, command="", description="", folder=tmp_path)


def test_shipped_entries_are_float32_under_the_limit_and_match_their_records():
    assert "mnist-vae-z20-e10" in pretrained.PRETRAINED
    for name in pretrained.PRETRAINED:
        record_path = pretrained.PRETRAINED[name]
        record = json.loads(record_path.read_text())
        assert record_path.with_suffix(".pt").stat().st_size <= MAX_BYTES
        state = read_weights(record_path.with_suffix(".pt"), record)
        assert all(v.dtype == torch.float32 for v in state.values()) and record["command"].startswith("uv run pyro-vae")


def assert_program_is_the_runs(name, run, without_data, log_px_of) -> None:
    """``load_pretrained(name)`` on a machine without data sets has the log p(x) of ``run`` (its
    run with real data) on a few test images, with the same random draws; the record describes
    the data set loaded."""
    with without_data() as cache:
        program = load_pretrained(name)
        assert list(cache.iterdir()) == []
    assert pretrained.pretrained_record(name)["data"] == DataDescription.of(run.dataset).to_dict()
    batches = list(run.dataset.test_batches(4, keys=program.data_keys, num=8))
    assert log_px_of(program, batches) == log_px_of(run.program.eval(), batches)


@pytest.mark.data
def test_shipped_main_job_loads_and_fits_its_model(real_data_dir, without_data, log_px_of):
    run = load_pretrained_run("mnist-vae-z20-e10", str(real_data_dir))
    assert run.config.hidden == (500,) and run.config.z_dim == 20 and run.metrics[-1]["epoch"] == 10
    assert_program_is_the_runs("mnist-vae-z20-e10", run, without_data, log_px_of)


@pytest.mark.data
@pytest.mark.parametrize(
    "name, model, hidden, z_dim, lr_schedule, epoch, log_px",
    [
        ("mnist-vae-z50-e3280", "vae", (200, 200), 50, "iwae", 3280, -87.86),
        ("mnist-two-layer-elu-e3280", "two-layer", (200, 200), 100, "iwae", 3280, -85.42),
        ("mnist-vampprior-elu-e2000", "vampprior", (300, 300), 40, "constant", 2000, -82.89),
    ],
)
def test_shipped_long_runs_load_with_their_recorded_marginal_likelihood(
    real_data_dir, without_data, log_px_of, name, model, hidden, z_dim, lr_schedule, epoch, log_px
):
    run = load_pretrained_run(name, str(real_data_dir))
    assert run.config.model == model and run.config.hidden == hidden and run.config.z_dim == z_dim
    assert run.config.lr_schedule == lr_schedule and run.metrics[-1]["epoch"] == epoch
    record = json.loads(pretrained.PRETRAINED[name].read_text())
    report = record["reports"][f"eval-epoch{epoch}-k5000-n10000"]
    assert report["num_test"] == 10000 and report["test_log_px"] == pytest.approx(log_px, abs=0.005)
    assert_program_is_the_runs(name, run, without_data, log_px_of)


@pytest.mark.data
def test_shipped_m2_classifies_the_test_images_with_its_recorded_error(real_data_dir, without_data, log_px_of):
    name = "mnist-m2-1000-labels-e100"
    run = load_pretrained_run(name, str(real_data_dir))
    assert run.config.model == "m2" and run.config.num_labels == 1000 and run.metrics[-1]["epoch"] == 100
    record = json.loads(pretrained.PRETRAINED[name].read_text())
    report = record["reports"]["eval-epoch0100-k100-n10000"]
    assert report["num_test"] == 10000 and report["test_error"] == run.metrics[-1]["test_error"] == 0.0465
    error = classification_error(run.program.eval(), run.dataset.test_batches(1000, keys=("x", "y")))
    assert error == pytest.approx(0.0465, abs=1e-9)
    assert_program_is_the_runs(name, run, without_data, log_px_of)


def _edit_record(entry, change) -> None:
    record = json.loads(entry.read_text())
    entry.write_text(json.dumps(change(record)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: {**r, "config": "x"}, ": the entry config must be a dict of TrainConfig fields, got 'x'"),
        (
            lambda r: {**r, "config": {**r["config"], "lr": -1}},
            ": its config is not valid: lr must be a finite number > 0, got -1",
        ),
        (
            lambda r: {**r, "config": {**r["config"], "lrr": 1}},
            ": its config is not valid: unknown config entries ['lrr']",
        ),
        (
            lambda r: {**r, "bytes": "12"},
            ": the entry bytes must be the size of the weights file, an int >= 0, got '12'",
        ),
        (
            lambda r: {**r, "sha256": 5},
            ": the entry sha256 must be the SHA-256 of the weights file, 64 hex digits, got 5",
        ),
        (
            lambda r: {**r, "metrics": "x"},
            ": the entry metrics must be the learning curve, a list of metrics rows (dicts), got 'x'",
        ),
        (
            lambda r: {**r, "data": {**r["data"], "likelihood": "poisson"}},
            ": its data entry is not valid: likelihood must be one of ['bernoulli', 'gaussian'], got 'poisson'",
        ),
        (
            lambda r: {k: v for k, v in r.items() if k != "data"},
            " lacks the entries ['data']; write it again with export_pretrained or save_pretrained",
        ),
        (
            lambda r: {**r, "config": {**r["config"], "model": "nobody's"}},
            ' holds a program of the model "nobody\'s", which is not registered here; import the module that '
            "registers it first (register_model). Registered: {registered}",  # as it is when the test runs
        ),
        (lambda r: [r], " must be a JSON object, got a list"),
    ],
)
def test_a_record_of_the_wrong_kind_is_one_line(entry, change, message):
    _edit_record(entry, change)  # on main: AttributeError or TypeError tracebacks, or metrics taken as they came
    with pytest.raises(PretrainedError) as raised:
        load_pretrained("toy")
    assert str(raised.value) == f"pretrained record {entry}{message}".replace(
        "{registered}", str(pyro_vae.MODELS.names())
    )


def test_non_finite_weights_are_named(entry):
    state = torch.load(entry.with_suffix(".pt"), weights_only=True)
    model = {**state["model"], "decoder.0.bias": torch.full_like(state["model"]["decoder.0.bias"], float("nan"))}
    _rewrite(entry, {**state, "model": model})
    with pytest.raises(PretrainedError) as raised:  # on main: Pyro's dump of a distribution's arguments, at first use
        load_pretrained("toy")
    assert str(raised.value) == (
        f"checkpoint {entry.with_suffix('.pt')}: the model state holds NaN or infinite values in decoder.0.bias "
        "(written by a run that had diverged, or damaged); use another checkpoint"
    )
