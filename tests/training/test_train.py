import json
import math
import re

import pyro
import pytest
import torch
from support import SMALL

from pyro_vae.inference import ALGORITHMS
from pyro_vae.inference.optim import iwae_factor
from pyro_vae.inference.svi import AEVB
from pyro_vae.training import EvalSchedule, TrainConfig, TrainingDiverged, build_run, load_run, train
from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyro_vae.training.report import read_report
from pyro_vae.training.resume import resume_config


def test_training_lowers_the_loss(tmp_path):
    run = train(TrainConfig(**SMALL, epochs=4), tmp_path / "run", progress=False)
    elbos = [m["test_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 3.0  # nats per datum
    assert [m["samples_seen"] for m in run.metrics] == [2000, 4000, 6000, 8000]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,samples_seen,lr,train_elbo,test_elbo,train_seconds,wall_seconds"


@pytest.mark.parametrize("estimator", ["reparam", "reparam-analytic-kl", "score-baseline", "score-nvil"])
@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_resume_continues_the_same_run(tmp_path, estimator, optimizer):
    config = dict(SMALL, estimator=estimator, optimizer=optimizer, num_particles=2)
    straight = train(TrainConfig(**config, epochs=2), tmp_path / "a", progress=False)
    train(TrainConfig(**config, epochs=1), tmp_path / "b", progress=False)
    resumed = train(TrainConfig(**config, epochs=2), tmp_path / "b", resume=True, progress=False)
    for (name, p), q in zip(straight.program.state_dict().items(), resumed.program.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(straight.estimator.modules.parameters(), resumed.estimator.modules.parameters()):
        assert torch.equal(p, q)
    strip = lambda ms: [{k: v for k, v in m.items() if "seconds" not in k} for m in ms]  # noqa: E731
    assert strip(straight.metrics) == strip(resumed.metrics)
    loaded = load_run(tmp_path / "b")
    assert all(torch.equal(p, q) for p, q in zip(loaded.program.parameters(), resumed.program.parameters()))


@pytest.mark.parametrize(
    "finished_epochs, stage",
    [(0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (1092, 6), (1093, 7), (3279, 7), (10_000, 7)],
)
def test_iwae_schedule_stages(finished_epochs, stage):
    # Burda et al. (2016): stage i lasts 3^i epochs at lr * 10^(-i/7); 3,280 epochs in all.
    assert iwae_factor(finished_epochs) == pytest.approx(10 ** (-stage / 7))


def _learning_rates(algorithm) -> set[float]:
    optimizers = (
        [algorithm.optimizer] if isinstance(algorithm, AEVB) else [algorithm.decoder_optim, algorithm.encoder_optim]
    )
    return {group["lr"] for optim in optimizers for group in optim.param_groups}


@pytest.mark.parametrize("algorithm", ["aevb", "wake-sleep"])
def test_lr_schedule_reaches_the_optimizers(algorithm):
    config = TrainConfig(**SMALL, algorithm=algorithm, lr_schedule="iwae")
    run = build_run(config)
    updater = ALGORITHMS[algorithm](run.program, run.estimator, config)
    x = run.dataset.train[:100]
    rates = []
    for _ in range(5):  # epochs 1-5: stages 0, 1, 1, 1, 2
        updater.step({"x": x}, len(run.dataset.train))
        rates.append(_learning_rates(updater))
        updater.end_epoch()
    assert rates == [{1e-2 * 10 ** (-i / 7)} for i in (0, 1, 1, 1, 2)]


@pytest.mark.parametrize(
    "algorithm, schedule, factors",
    [
        ("aevb", dict(lr_schedule="iwae"), [10 ** (-i / 7) for i in (0, 1, 1, 1, 2)]),
        ("wake-sleep", dict(lr_schedule="iwae"), [10 ** (-i / 7) for i in (0, 1, 1, 1, 2)]),
        # linear warm-up over 2 epochs (1/3, 2/3), then cosine over the other 3 (with epochs=5 fixed by the run)
        (
            "aevb",
            dict(
                lr_schedule="cosine",
                schedule_options={"warmup": 2},
                optimizer="adamw",
                optimizer_options={"betas": (0.8, 0.99)},
            ),
            [1 / 3, 2 / 3, 1.0, 0.75, 0.25],
        ),
    ],
)
def test_resume_keeps_the_lr_schedule(tmp_path, algorithm, schedule, factors):
    config = dict(SMALL, algorithm=algorithm, **schedule)
    straight = train(TrainConfig(**config, epochs=5), tmp_path / "a", progress=False)
    cls = ALGORITHMS[algorithm]
    step, steps = cls.step, []

    def interrupted(self, batch, total_size):  # killed in the first step of epoch 3 (20 steps an epoch)
        steps.append(1)
        if len(steps) > 40:
            raise KeyboardInterrupt
        return step(self, batch, total_size)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(cls, "step", interrupted)
        train(TrainConfig(**config, epochs=5), tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    resumed = train(TrainConfig(**config, epochs=5), tmp_path / "b", resume=True, progress=False)
    for p, q in zip(straight.program.parameters(), resumed.program.parameters()):
        assert torch.equal(p, q)
    assert [m["lr"] for m in resumed.metrics] == pytest.approx([1e-2 * f for f in factors])


def test_a_schedule_that_spans_the_run_cannot_be_extended(tmp_path):
    train(TrainConfig(**SMALL, epochs=1, lr_schedule="cosine"), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"its 'cosine' schedule spans the 1 epochs it was started with"):
        train(TrainConfig(**SMALL, epochs=2, lr_schedule="cosine"), tmp_path, resume=True, progress=False)
    train(TrainConfig(**SMALL, epochs=1, lr_schedule="exponential"), tmp_path / "e", progress=False)
    assert (
        len(
            train(
                TrainConfig(**SMALL, epochs=2, lr_schedule="exponential"), tmp_path / "e", resume=True, progress=False
            ).metrics
        )
        == 2
    )


def test_resume_refuses_a_different_config(tmp_path):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"config differs.*'lr': \(0.01, 0.5\)"):
        train(TrainConfig(**{**SMALL, "lr": 0.5}, epochs=2), tmp_path, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(AEVB, "step", lambda self, batch, total_size: math.nan)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 1.*epoch 1.*intact"):
        train(TrainConfig(**SMALL, epochs=2), tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pyro_vae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint({"config": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"lacks the entries \['epoch'"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(TrainConfig(**SMALL), tmp_path / "none", resume=True, progress=False)


def test_truncated_checkpoint_is_reported(tmp_path):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_run(tmp_path)


def test_atomic_save_leaves_old_checkpoint_on_failure(tmp_path, monkeypatch):
    save_checkpoint({"config": {}, "epoch": 1}, tmp_path / "c.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"config": {}, "epoch": 2}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "c.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="magic"), "unknown estimator 'magic'; expected one of"),
        (dict(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
        (dict(likelihood="poisson"), "unknown likelihood 'poisson'"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(lr=-1.0), "lr must be a finite number > 0, got -1.0"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0, got -0.1"),
        (
            dict(lr_schedule="cyclic"),
            "unknown learning-rate schedule 'cyclic'; expected one of \\['constant', 'iwae', 'cosine'",
        ),
        (
            dict(optimizer="sgd", optimizer_options=dict(mom=0.9)),
            r"optimizer 'sgd' does not take the option\(s\) \['mom'\]",
        ),
        (dict(optimizer="sgd", optimizer_options=dict(momentum=-1.0)), "optimizer 'sgd' with options.*momentum"),
        (
            dict(lr_schedule="step", schedule_options=dict(gama=0.5)),
            r"schedule 'step' does not take the option\(s\) \['gama'\]",
        ),
        (dict(schedule_options=dict(warmup=-2)), "warmup must be an int >= 0"),
        (dict(estimator_options=dict(beta=2.0)), r"estimator 'reparam' does not take the option\(s\) \['beta'\]"),
        (dict(model="magic"), "unknown model 'magic'; expected one of \\['vae'"),
        (dict(algorithm="magic"), "unknown algorithm 'magic'"),
        (dict(algorithm="rws", num_particles=1), "rws needs num_particles >= 2"),
        (dict(model_options=[1]), "model_options must be a dict"),
        (dict(hidden=(-5,)), r"hidden must be sizes >= 1, one per hidden layer, got \(-5,\)"),
        (dict(hidden=(200, 0)), r"hidden must be sizes >= 1, one per hidden layer, got \(200, 0\)"),
        (dict(init_std=-1.0), "init_std must be a finite number > 0 \\(or None\\), got -1.0"),
        (dict(lr=math.inf), "lr must be a finite number > 0, got inf"),
        (dict(lr=math.nan), "lr must be a finite number > 0, got nan"),
        (dict(weight_decay=math.inf), "weight_decay must be a finite number >= 0, got inf"),
        (dict(activation="sigmoidish"), "unknown activation 'sigmoidish'"),
    ],
)
def test_bad_config_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_config_entry():
    with pytest.raises(ValueError, match=r"unknown config entries \['zdim'\]"):
        TrainConfig.from_dict({"zdim": 3})


def test_a_checkpoint_of_renamed_config_entries_still_loads_and_resumes(tmp_path):
    # checkpoints written before eval_samples became metrics_num_samples (longruns/*/checkpoint.pt)
    train(TrainConfig(**SMALL, metrics_num_samples=3, epochs=1), tmp_path, progress=False)
    _rewrite(
        tmp_path / "checkpoint.pt", lambda s: s["config"].update(eval_samples=s["config"].pop("metrics_num_samples"))
    )
    assert "eval_samples" in load_checkpoint(tmp_path / "checkpoint.pt")["config"]
    assert load_run(tmp_path).config.metrics_num_samples == 3
    assert resume_config(tmp_path, {"epochs": 2}) == TrainConfig(**SMALL, metrics_num_samples=3, epochs=2)
    resumed = train(TrainConfig(**SMALL, metrics_num_samples=3, epochs=2), tmp_path, resume=True, progress=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["metrics_num_samples"] == 3


def test_a_report_of_renamed_entries_is_read_under_the_new_names(tmp_path):
    path = tmp_path / "eval-epoch0001-k5-n50.json"
    path.write_text(json.dumps({"k": 5, "num_test": 50, "test_log_px": -90.5}))
    assert read_report(path) == {"num_samples": 5, "num_test": 50, "test_log_px": -90.5}


@pytest.mark.cuda
@pytest.mark.parametrize(
    "extra",
    [
        dict(estimator="reparam"),
        dict(estimator="score-baseline"),
        dict(estimator="score-nvil"),
        dict(algorithm="wake-sleep"),
        dict(algorithm="rws", num_particles=2),
        dict(algorithm="mcem"),
    ],
)
def test_trains_and_resumes_on_cuda(tmp_path, extra):
    config = dict(SMALL, **extra)
    straight = train(TrainConfig(**config, epochs=2), tmp_path / "a", device="cuda", progress=False)
    train(TrainConfig(**config, epochs=1), tmp_path / "b", device="cuda", progress=False)
    run = train(TrainConfig(**config, epochs=2), tmp_path / "b", device="cuda", resume=True, progress=False)
    assert all(p.is_cuda for p in run.program.parameters())
    assert run.metrics[-1]["test_elbo"] > run.metrics[0]["test_elbo"]
    for p, q in zip(straight.program.parameters(), run.program.parameters()):
        torch.testing.assert_close(p, q)  # the same run, up to nondeterministic CUDA kernels
    assert all(p.device.type == "cpu" for p in load_run(tmp_path / "b").program.parameters())


@pytest.mark.cuda
def test_evaluates_plots_and_compares_estimators_on_cuda(tmp_path):
    from pyro_vae.inference.evaluate import evaluate
    from pyro_vae.inference.variance import compare_estimators
    from pyro_vae.plots import write_figures

    train(TrainConfig(**SMALL, epochs=1), tmp_path, device="cuda", progress=False)
    run = load_run(tmp_path, device="cuda")
    x = run.dataset.test[:100].cuda()
    result = evaluate(run.program, [x], num_samples=50)
    assert result.log_px >= result.elbo
    assert {p.name for p in write_figures(run, tmp_path / "figures")} >= {"samples.png", "manifold.png"}
    rows = compare_estimators(run.program, x, ["score-nvil"], num_draws=4, adapt_batches=[x])
    assert all(math.isfinite(r["ratio"]) for r in rows)


# --- corrupt and mismatched checkpoints (issue #13, item 6) ---------------------------------
import struct  # noqa: E402
import zipfile  # noqa: E402

from pyro_vae.models.vae import VAE  # noqa: E402


def _flip_a_weight(path) -> None:
    """Flip one byte in the middle of the largest tensor's data (a weight, stored uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("reader", ["load_checkpoint", "load_run", "resume"])
def test_flipped_bytes_in_a_tensor_are_detected(tmp_path, reader):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    _flip_a_weight(tmp_path / "checkpoint.pt")
    read = {
        "load_checkpoint": lambda: load_checkpoint(tmp_path / "checkpoint.pt"),
        "load_run": lambda: load_run(tmp_path),
        "resume": lambda: train(TrainConfig(**SMALL, epochs=2), tmp_path, resume=True, progress=False),
    }[reader]
    with pytest.raises(
        CheckpointError, match=r"checkpoint .*checkpoint.pt is corrupt: the data of '.*' fail their CRC check"
    ):
        read()


def _rewrite(path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    del state["format"]
    save_checkpoint(state, path)


CHECKPOINT_CHANGES = {
    "another architecture": (
        lambda s: s.update(model=VAE(64, z_dim=2, hidden=(8,)).state_dict()),
        r"does not fit the model its config describes \(another architecture\?\): "
        r"shape of encoder.net.0.weight \(8, 64\) \(the model has \(16, 64\)\)",
    ),
    "a missing layer": (
        lambda s: s["model"].pop("decoder.2.bias"),
        r"does not fit the model its config describes .*: missing decoder.2.bias",
    ),
    "no estimator": (lambda s: s.pop("estimator"), r"lacks the entries \['estimator'\]"),
    "no metrics": (lambda s: s.pop("metrics"), r"lacks the entries \['metrics'\]"),
}


@pytest.mark.parametrize("change", sorted(CHECKPOINT_CHANGES))
@pytest.mark.parametrize("reader", ["load_run", "resume"])
def test_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path, change, reader):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    edit, match = CHECKPOINT_CHANGES[change]
    _rewrite(tmp_path / "checkpoint.pt", edit)
    with pytest.raises(CheckpointError, match=match):
        if reader == "load_run":
            load_run(tmp_path)
        else:
            train(TrainConfig(**SMALL, epochs=2), tmp_path, resume=True, progress=False)


def test_resume_cannot_shorten_a_run(tmp_path):
    train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume .* to 1 epochs: it has already run 2"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, resume=True, progress=False)


def test_training_leaves_the_global_param_store_alone(tmp_path):
    pyro.param("users_own", torch.tensor([1.0, 2.0]))
    pyro.param("encoder$$$net.0.weight", torch.zeros(3))  # a stale name a library run would collide with
    run = train(TrainConfig(**SMALL, estimator="score-baseline", epochs=1), tmp_path, progress=False)
    store = pyro.get_param_store()
    assert set(store.keys()) == {"users_own", "encoder$$$net.0.weight"}
    assert torch.equal(store["users_own"], torch.tensor([1.0, 2.0]))
    assert torch.equal(store["encoder$$$net.0.weight"], torch.zeros(3))
    assert run.program.encoder.net[0].weight.shape == (16, 64)


@pytest.mark.parametrize(
    "evals_per_decade, steps_per_epoch, epochs, steps",
    [
        (0, 20, 3, [20, 40, 60]),  # the end of every epoch
        # 10 steps of 100 per epoch, 100 epochs: 10^(j/10) samples for j = 30..50, in whole steps
        (10, 10, 100, sorted({math.ceil(10 ** (j / 10) / 100 - 1e-9) for j in range(30, 51)})),
        (2, 17, 6, [32, 100, 102]),  # 10^3.5, 10^4 samples; the first point is one epoch's 1700 or more
    ],
)
def test_eval_schedule(evals_per_decade, steps_per_epoch, epochs, steps):
    schedule = EvalSchedule(evals_per_decade, steps_per_epoch, 100, epochs)
    assert [s for s in range(1, steps_per_epoch * epochs + 1) if schedule.due(s)] == steps


def _without_times(rows):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def test_log_schedule_rows_resume_and_leave_training_alone(tmp_path):
    config = dict(SMALL, evals_per_decade=3, metrics_num_samples=4)
    straight = train(TrainConfig(**config, epochs=6), tmp_path / "a", progress=False)
    # rows at 10^(j/3) samples from one epoch (2000) on, in whole steps of 100, and at the end
    assert [r["samples_seen"] for r in straight.metrics] == [2200, 4700, 10000, 12000]
    assert [r["epoch"] for r in straight.metrics] == [2, 3, 5, 6]
    train(TrainConfig(**config, epochs=4), tmp_path / "b", progress=False)
    resumed = train(TrainConfig(**config, epochs=6), tmp_path / "b", resume=True, progress=False)
    # the first call ended with a row at its last step (8000), so the next row's train ELBO
    # averages the steps since then; every other number is the same
    assert [r["samples_seen"] for r in resumed.metrics] == [2200, 4700, 8000, 10000, 12000]
    rows, expected = _without_times(resumed.metrics), _without_times(straight.metrics)
    assert rows[:2] == expected[:2] and rows[4:] == expected[3:]
    assert rows[3]["test_elbo"] == expected[2]["test_elbo"]
    for p, q in zip(straight.program.parameters(), resumed.program.parameters()):
        assert torch.equal(p, q)
    # evaluation and on_eval draw on a forked RNG: the training is the same with any schedule
    calls = []
    other = train(
        TrainConfig(**{**config, "evals_per_decade": 7}, epochs=6),
        tmp_path / "c",
        progress=False,
        on_eval=lambda run: calls.append(torch.randn(1)) or {"extra": 1.5},
    )
    for p, q in zip(straight.program.parameters(), other.program.parameters()):
        assert torch.equal(p, q)
    assert len(calls) == len(other.metrics) and all(r["extra"] == 1.5 for r in other.metrics)
    assert all(torch.equal(c, calls[0]) for c in calls)  # the same seed at every row
    header = (tmp_path / "c" / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",")[-2:] == ["extra", "wall_seconds"]


@pytest.mark.parametrize("every_step", [False, True])
def test_validation_runs_on_the_first_step_or_every_step(tmp_path, monkeypatch, every_step):
    from pyro.infer.util import is_validation_enabled

    seen, step = [], AEVB.step

    def recording(self, batch, total_size):
        seen.append(is_validation_enabled())
        return step(self, batch, total_size)

    monkeypatch.setattr(AEVB, "step", recording)
    train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False, validate_every_step=every_step)
    train(TrainConfig(**SMALL, epochs=3), tmp_path, resume=True, progress=False, validate_every_step=every_step)
    first_of_each_call = [True] + [every_step] * 39 + [True] + [every_step] * 19
    assert seen == first_of_each_call and is_validation_enabled()


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            dict(init="glorot", init_std=0.01),
            ValueError,
            "init='glorot' and init_std=0.01 both set the weights' start; give one",
        ),
        (dict(init="xavier"), ValueError, "unknown initialization 'xavier'; expected one of ['torch', 'glorot']"),
    ],
)
def test_the_initialization_is_checked(options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        TrainConfig(dataset="synthetic", **options)


def test_a_glorot_run_starts_from_glorots_weights(tmp_path):
    run = train(TrainConfig(**{**SMALL, "lr": 1e-12}, epochs=1, init="glorot"), tmp_path, progress=False)
    first = run.program.encoder.net[0]
    bound = math.sqrt(6 / (first.in_features + first.out_features))
    assert first.weight.abs().max() <= bound * (1 + 1e-6) and first.weight.std() > 0.9 * bound / math.sqrt(3)
    assert load_run(tmp_path).config.init == "glorot"


def test_a_config_cannot_change_after_its_checks():
    import dataclasses

    config = TrainConfig(dataset="synthetic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = -1.0
    with pytest.raises(ValueError, match="lr must be"):
        dataclasses.replace(config, lr=-1.0)  # a changed copy is checked again
    assert config.lr == 1e-3
