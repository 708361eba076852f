"""How the optimizers step in a run (inference.stepping): per-epoch, per-step and plateau
schedules, the loss scale and gradient clipping, and a resume that continues exactly."""

import dataclasses
import io
import math

import pytest
import torch

from pyro_vae.data import make_synthetic
from pyro_vae.data.batches import Batches
from pyro_vae.inference import ALGORITHMS, make_estimator, register_schedule
from pyro_vae.inference.stepping import Stepping, steps_per_epoch
from pyro_vae.models.vae import VAE
from pyro_vae.training import TrainConfig, train

DATA = make_synthetic(num_train=400, num_test=10).train  # 4 minibatches of 100 per epoch
TINY = dict(dataset="synthetic", z_dim=2, hidden=(8,), batch_size=100, lr=1e-2)


def _algorithm(config: TrainConfig):
    torch.manual_seed(0)
    vae = VAE(DATA.shape[1:], z_dim=config.z_dim, hidden=config.hidden)
    estimator = make_estimator(config.estimator, vae, config.num_particles)
    return ALGORITHMS[config.algorithm](vae, estimator, config), vae


def _train(algorithm, config: TrainConfig, epochs: int, generator: torch.Generator) -> None:
    """``epochs`` epochs as the training loop runs them, with a metrics row (the epoch's mean
    minibatch bound as its test ELBO) observed at each epoch's end."""
    for _ in range(epochs):
        losses = [algorithm.step(batch, len(DATA)) for batch in Batches(DATA, config.batch_size, generator=generator)]
        algorithm.observe({"epoch": 0, "test_elbo": -sum(losses) / len(losses) / len(DATA)})
        algorithm.end_epoch()


def _saved(obj):
    """``obj`` after a round trip through ``torch.save``, as a checkpoint holds it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


RESUMED = [
    dict(optimizer="NAdam", lr_schedule="OneCycleLR", schedule_options={"max_lr": 0.02}, schedule_interval="step"),
    dict(optimizer="RAdam", lr_schedule="CosineAnnealingLR"),
    dict(optimizer="adam", lr_schedule="plateau", schedule_options={"patience": 0, "factor": 0.5}, kl_warmup=3),
    dict(
        optimizer="sgd",
        lr=0.01,
        optimizer_options={"momentum": 0.9},
        lr_schedule="StepLR",
        schedule_options={"step_size": 5, "gamma": 0.5, "warmup": 3},
        schedule_interval="step",
        loss_scale="mean",
        clip_norm=20.0,
    ),
    dict(algorithm="wake-sleep", optimizer="Adamax", lr_schedule="ExponentialLR", schedule_options={"gamma": 0.9}),
]


@pytest.mark.parametrize("settings", RESUMED, ids=lambda s: f"{s.get('algorithm', 'aevb')}-{s['lr_schedule']}")
def test_two_halves_resumed_from_a_checkpoint_equal_one_whole_run(settings):
    config = TrainConfig(**{**TINY, **settings, "epochs": 4})
    whole, whole_vae = _algorithm(config)
    _train(whole, config, 4, torch.Generator().manual_seed(1))

    first, first_vae = _algorithm(config)
    generator = torch.Generator().manual_seed(1)
    _train(first, config, 2, generator)
    checkpoint = _saved(
        {"model": first_vae.state_dict(), "algorithm": first.state_dict(), "rng": torch.get_rng_state()}
    )
    second, second_vae = _algorithm(config)  # a new process: fresh modules, optimizers and schedules
    second_vae.load_state_dict(checkpoint["model"])
    second.load_state_dict(checkpoint["algorithm"])
    torch.set_rng_state(checkpoint["rng"])
    _train(second, config, 2, generator)

    assert second.learning_rate() == whole.learning_rate()
    assert second.stepping.epoch == whole.stepping.epoch == 4
    for (name, p), q in zip(whole_vae.state_dict().items(), second_vae.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    start = _algorithm(config)[1].state_dict()
    assert not all(torch.equal(p, q) for p, q in zip(start.values(), whole_vae.state_dict().values()))  # it trained


def test_a_checkpoint_of_version_0_1_0_resumes_in_its_epoch():
    # 0.1.0 saved the one epoch-wise scheduler as "scheduler", and the epoch was its last_epoch
    config = TrainConfig(**TINY, lr_schedule="iwae", kl_warmup=4, epochs=6)
    first, _ = _algorithm(config)
    _train(first, config, 2, torch.Generator().manual_seed(1))
    state = first.state_dict()
    old = {"optimizer": state["optimizer"], "scheduler": state["schedule"]["schedulers"][0], "param_store": {}}
    second, _ = _algorithm(config)
    second.load_state_dict(_saved(old))
    assert second.stepping.epoch == 2 and second.beta() == first.beta() == 0.75
    assert second.stepping.state_dict() == first.stepping.state_dict()


# --- plateau: on the metrics rows' bound ------------------------------------------------------------
def _plateau(**options) -> tuple[torch.optim.Optimizer, Stepping]:
    config = TrainConfig(**TINY, lr_schedule="plateau", schedule_options=options)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    return optimizer, Stepping([optimizer], config)


def test_plateau_lowers_the_rate_after_patience_rows_without_a_better_bound():
    optimizer, stepping = _plateau(patience=2, factor=0.5)
    rates = []
    for elbo in [-100.0, -90.0, -80.0, -80.0, -81.0, -80.5, -85.0]:  # better, better, then 4 rows no better
        stepping.observe({"train_elbo": 0.0, "test_elbo": elbo})
        rates.append(optimizer.param_groups[0]["lr"])
    # a rising ELBO is an improvement: the rate holds; the third row without one (> patience) halves it
    assert rates == pytest.approx([0.01] * 5 + [0.005] * 2)


def test_plateau_watches_the_validation_bound_when_the_row_has_one():
    optimizer, stepping = _plateau(patience=0, factor=0.5)
    stepping.observe({"val_elbo": -100.0, "test_elbo": -100.0})
    stepping.observe({"val_elbo": -99.0, "test_elbo": -120.0})  # validation better, test worse
    assert optimizer.param_groups[0]["lr"] == 0.01
    stepping.observe({"val_elbo": -101.0, "test_elbo": -50.0})
    assert optimizer.param_groups[0]["lr"] == 0.005
    with pytest.raises(ValueError, match=r"^the plateau schedule steps on a metrics row's val_elbo or test_elbo; "):
        stepping.observe({"loss": 1.0})


def test_plateau_keeps_its_place_through_a_state_dict():
    optimizer, stepping = _plateau(patience=1, factor=0.5)
    for elbo in (-100.0, -101.0):  # one row without improvement
        stepping.observe({"test_elbo": elbo})
    resumed_optimizer, resumed = _plateau(patience=1, factor=0.5)
    resumed.load_state_dict(_saved(stepping.state_dict()))
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.observe({"test_elbo": -102.0})  # the second: past patience 1
    assert resumed_optimizer.param_groups[0]["lr"] == 0.005


@register_schedule("test-plateau-up")
def _plateau_up(optimizer, epochs):
    """a user's plateau schedule in mode 'max', which the negative ELBO the trainer feeds would invert"""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")


def test_plateau_takes_no_warmup_and_no_mode():
    with pytest.raises(ValueError, match="schedule 'test-plateau-up' is a ReduceLROnPlateau in mode 'max'"):
        TrainConfig(**TINY, lr_schedule="test-plateau-up")
    with pytest.raises(ValueError, match="schedule 'plateau' takes no warmup"):
        TrainConfig(**TINY, lr_schedule="plateau", schedule_options={"warmup": 2})
    with pytest.raises(ValueError, match=r"schedule 'ReduceLROnPlateau' does not take the option\(s\) \['mode'\]"):
        TrainConfig(**TINY, lr_schedule="ReduceLROnPlateau", schedule_options={"mode": "max"})


# --- per-step schedules --------------------------------------------------------------------------
def _per_step(epochs: int, **settings) -> tuple[torch.optim.Optimizer, Stepping]:
    config = TrainConfig(**{**TINY, "epochs": epochs, "schedule_interval": "step", **settings})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return optimizer, Stepping([optimizer], config)


def _rates_per_step(optimizer, stepping, steps: int) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps, 4 per epoch."""
    rates = []
    for step in range(1, steps + 1):
        with stepping.update(len(DATA)):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
        if step % 4 == 0:
            stepping.end_epoch()
    return rates


def test_a_per_step_schedule_spans_the_runs_optimizer_steps():
    # 2 epochs of 4 steps: the cosine's T_max is 8 steps, the warm-up's 2 steps count steps too
    optimizer, stepping = _per_step(2, lr_schedule="CosineAnnealingLR")
    assert _rates_per_step(optimizer, stepping, 8) == pytest.approx(
        [(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    )
    assert stepping.steps_per_epoch == 4 and stepping.epoch == 2
    optimizer, stepping = _per_step(2, lr_schedule="cosine", schedule_options={"warmup": 2})
    expected = [1 / 3, 2 / 3] + [(1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert _rates_per_step(optimizer, stepping, 8) == pytest.approx(expected)


def test_a_per_step_schedule_refuses_an_epoch_of_other_steps():
    optimizer, stepping = _per_step(2, lr_schedule="StepLR", schedule_options={"step_size": 2})
    _rates_per_step(optimizer, stepping, 3)
    with pytest.raises(ValueError, match="built for 4 steps per epoch .* and this epoch took 3"):
        stepping.end_epoch()


@pytest.mark.parametrize(
    "settings, n, steps",
    [(dict(), 400, 4), (dict(), 450, 4), (dict(), 1, 1), (dict(num_labels=20, labelled_per_batch=10), 400, 4)],
)
def test_steps_per_epoch_are_the_loops_minibatches(settings, n, steps):
    assert steps_per_epoch(TrainConfig(**{**TINY, **settings}), n) == steps


# --- the loss scale and clipping -------------------------------------------------------------------
def _one_step(wrapper_hook=None, **settings):
    """The program after one step of the algorithm ``settings`` make, and the norm of the gradient
    it stepped; ``wrapper_hook`` is a pre-hook added to its optimizer when it is built, as
    distributed.DistributedAlgorithm adds the averaging of the gradients over processes."""
    config = TrainConfig(**{**TINY, **settings})
    algorithm, vae = _algorithm(config)
    if wrapper_hook is not None:
        algorithm.optimizer.register_step_pre_hook(wrapper_hook)
    norms = []
    algorithm.optimizer.register_step_post_hook(
        lambda optimizer, args, kwargs: norms.append(
            torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in vae.parameters()])).item()
        )
    )
    algorithm.step({"x": DATA[:100]}, len(DATA))
    return vae, norms[0]


def test_clipping_bounds_the_gradients_norm():
    _, norm = _one_step(optimizer="sgd")
    assert norm > 100  # the whole-data gradient, N / M = 4 times the minibatch sum's
    _, clipped = _one_step(optimizer="sgd", clip_norm=5.0)
    assert clipped == pytest.approx(5.0)
    _, unclipped = _one_step(optimizer="sgd", clip_norm=10 * norm)  # a larger bound leaves it
    assert unclipped == pytest.approx(norm)


def test_clipping_sees_the_gradient_after_the_hooks_of_a_wrapper():
    def triple(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad.mul_(3)

    _, norm = _one_step(optimizer="sgd")
    _, tripled = _one_step(triple, optimizer="sgd", clip_norm=2 * norm)  # 3 x norm, clipped to 2 x norm
    assert tripled == pytest.approx(2 * norm)


def test_the_mean_loss_scale_is_the_sum_scale_with_the_rate_divided_by_n():
    per_datum, norm = _one_step(optimizer="sgd", lr=0.1, loss_scale="mean")
    whole_data, whole_norm = _one_step(optimizer="sgd", lr=0.1 / len(DATA))
    assert norm == pytest.approx(whole_norm / len(DATA))
    for p, q in zip(per_datum.parameters(), whole_data.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(clip_norm=0.0), "clip_norm must be a finite number > 0 (or None: no clipping), got 0.0"),
        (dict(clip_norm=math.nan), "clip_norm must be a finite number > 0 (or None: no clipping), got nan"),
        (dict(clip_norm=math.inf), "clip_norm must be a finite number > 0 (or None: no clipping), got inf"),
        (dict(schedule_interval="batch"), "schedule_interval must be one of ['epoch', 'step'], got 'batch'"),
        (dict(loss_scale="datum"), "loss_scale must be one of ['sum', 'mean'], got 'datum'"),
    ],
)
def test_the_stepping_fields_are_checked(settings, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**TINY, **settings)
    assert str(err.value) == message


def test_a_config_saved_before_the_stepping_fields_reads_as_before():
    saved = dataclasses.asdict(TrainConfig(**TINY))
    for key in ("schedule_interval", "clip_norm", "loss_scale"):
        del saved[key]
    config = TrainConfig.from_dict(saved)
    assert (config.schedule_interval, config.clip_norm, config.loss_scale) == ("epoch", None, "sum")


# --- through the training loop ---------------------------------------------------------------------
def test_a_run_with_a_plateau_and_a_class_named_optimizer_resumes_as_one_run(tmp_path):
    # threshold 1: no row is better by 100% (for torch not even the first), so each halves the rate
    plateau = {"patience": 0, "factor": 0.5, "threshold": 1.0}
    config = TrainConfig(**TINY, optimizer="NAdam", lr_schedule="plateau", schedule_options=plateau, epochs=3)
    straight = train(config, tmp_path / "straight", progress=False)
    train(dataclasses.replace(config, epochs=1), tmp_path / "resumed", progress=False)
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)

    def rows(run):
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in run.metrics]

    assert rows(resumed) == rows(straight)
    assert [row["lr"] for row in rows(straight)] == [0.01, 0.005, 0.0025]  # each row's rate, then observed
    for (name, p), q in zip(straight.program.state_dict().items(), resumed.program.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
