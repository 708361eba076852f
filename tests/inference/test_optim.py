"""Optimizers and schedules: torch's own, by registered or class name, with their options checked;
fused kernels where torch has them, the same update as the per-tensor loop."""

import math

import pytest
import torch
from support import SMALL

from pyro_vae.inference.optim import OPTIMIZERS, changed_options, configured_optimizer, fused_option, make_optimizer
from pyro_vae.inference.schedules import LR_SCHEDULES, iwae_factor, register_schedule, schedule_spans_the_run
from pyro_vae.inference.svi import AEVB
from pyro_vae.training import TrainConfig, TrainingDiverged, train


def _params(dtype=torch.float32) -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(20, 7, dtype=dtype)), torch.nn.Parameter(torch.randn(7, dtype=dtype))]


@pytest.mark.parametrize("name", ["adam", "adagrad"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_step_equals_the_per_tensor_loop(name, dtype):
    fused, loop = _params(dtype), _params(dtype)
    optimizer, _ = make_optimizer(fused, name, lr=0.05, weight_decay=0.1)
    assert optimizer.param_groups[0]["fused"] is True
    reference = OPTIMIZERS[name](loop, lr=0.05, weight_decay=0.1)
    for step in range(10):
        for p, q in zip(fused, loop):
            p.grad = q.grad = torch.randn(p.shape, dtype=dtype, generator=torch.Generator().manual_seed(step))
        optimizer.step()
        reference.step()
    for p, q, start in zip(fused, loop, _params(dtype)):
        assert not torch.allclose(p, start)  # it moved
        torch.testing.assert_close(p, q)


class PlainSGD(torch.optim.SGD):
    """An optimizer whose constructor has no ``fused`` argument."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)


def test_fused_only_where_the_class_and_the_parameters_allow_it():
    assert fused_option(torch.optim.Adam, _params()) == {"fused": True}
    assert fused_option(PlainSGD, _params()) == {}
    assert fused_option(torch.optim.Adam, [torch.nn.Parameter(torch.zeros(3, device="meta"))]) == {}
    assert fused_option(torch.optim.Adam, []) == {}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        make_optimizer(_params(), "adam", lr=0.0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0, got -1"):
        make_optimizer(_params(), "adam", lr=0.1, weight_decay=-1.0)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("adagrad", torch.optim.Adagrad),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_every_optimizer_is_torchs_own_with_its_options(name, cls):
    option = {"sgd": {"momentum": 0.9}, "rmsprop": {"alpha": 0.9}, "adagrad": {"lr_decay": 0.01}}.get(
        name, {"betas": (0.5, 0.9)}
    )
    optimizer, _ = make_optimizer(_params(), name, lr=0.05, options=option)
    assert type(optimizer) is cls
    ((key, value),) = option.items()
    assert optimizer.param_groups[0][key] == value


def _rates(schedule: str, epochs: int, **options) -> list[float]:
    optimizer, scheduler = make_optimizer(
        _params(), "sgd", lr=1.0, schedule=schedule, epochs=epochs, schedule_options=options
    )
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "schedule, options, factor",
    [
        ("constant", {}, lambda e: 1.0),
        ("cosine", {}, lambda e: (1 + math.cos(math.pi * e / 8)) / 2),
        ("cosine", {"eta_min": 0.1}, lambda e: 0.1 + 0.9 * (1 + math.cos(math.pi * e / 8)) / 2),
        ("step", {"step_size": 3, "gamma": 0.5}, lambda e: 0.5 ** (e // 3)),
        ("exponential", {"gamma": 0.8}, lambda e: 0.8**e),
        ("iwae", {}, iwae_factor),
    ],
)
def test_schedules_follow_their_closed_forms(schedule, options, factor):
    assert _rates(schedule, 8, **options) == pytest.approx([factor(e) for e in range(8)])


def test_linear_warmup_in_front_of_any_schedule():
    # warm-up over 3 epochs (factors 1/4, 2/4, 3/4), then cosine over the remaining 5 epochs
    expected = [0.25, 0.5, 0.75] + [(1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)]
    assert _rates("cosine", 8, warmup=3) == pytest.approx(expected)
    assert _rates("constant", 4, warmup=2) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(name="sgd", options={"mom": 0.9}),
            r"optimizer 'sgd' does not take the option\(s\) \['mom'\]; it takes \['momentum'",
        ),
        (dict(name="adam", options={"betas": (2.0, 0.9)}), "optimizer 'adam' with options .*beta"),
        (
            dict(name="adam", schedule="step", schedule_options={"gama": 0.5}),
            r"schedule 'step' does not take the option\(s\) \['gama'\]; it takes \['step_size', 'gamma'\]",
        ),
        (dict(name="adam", schedule="cosine", schedule_options={"warmup": 1.5}), "warmup must be an int >= 0"),
    ],
)
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(_params(), lr=0.1, **kwargs)


# --- every option checked against its rule before any work (issue #39) -------------------
# optimizer, option, values refused, a value accepted
RULES = [
    ("adam", "betas", [(0.9,), (0.9, 1.0), (-0.1, 0.9), (0.9, math.nan), "(0.9, 0.999)", 0.9], (0.5, 0.99)),
    ("adam", "eps", [0.0, -1e-8, math.inf, math.nan, "1e-8", True], 1e-6),
    ("adam", "amsgrad", [1, "yes"], True),
    ("adam", "maximize", [True, 1], False),
    ("adam", "fused", [True, False, None], None),
    ("adam", "foreach", [True, False], None),
    ("adam", "differentiable", [True], None),
    ("adam", "capturable", [True], None),
    ("sgd", "momentum", [-0.1, 1.0, math.inf, math.nan, "0.9"], 0.9),
    ("sgd", "dampening", [-1.0, 1.5, math.nan], 0.5),
    ("rmsprop", "alpha", [2.0, 1.0, -0.5, math.inf], 0.9),
    ("adagrad", "lr_decay", [-0.1, math.inf], 0.01),
    ("adagrad", "initial_accumulator_value", [-1.0, math.nan], 0.1),
]
REFUSED = [(name, key, value) for name, key, values, _ in RULES for value in values]


@pytest.mark.parametrize("name, key, value", REFUSED, ids=[f"{n}-{k}={v!r}" for n, k, v in REFUSED])
def test_an_optimizer_option_outside_its_range_is_refused_in_one_line(name, key, value):
    with pytest.raises(ValueError) as err:
        make_optimizer(_params(), name, lr=0.01, options={key: value})
    message = str(err.value)
    assert message.startswith(f"optimizer {name!r} with options {{{key!r}: {value!r}}}: {key} must be ")
    assert message.endswith(f", got {value!r}") and "\n" not in message


@pytest.mark.parametrize("name, key, good", [(n, k, g) for n, k, _, g in RULES if g is not None])
def test_an_option_inside_its_range_reaches_torch(name, key, good):
    optimizer, _ = make_optimizer(_params(), name, lr=0.01, options={key: good})
    assert optimizer.param_groups[0][key] == good


STEPS = "epochs, or optimizer steps with schedule_interval='step'"


@pytest.mark.parametrize(
    "schedule, options, message",
    [
        ("step", {"gamma": -1}, "gamma must be a finite number in (0, 1] (a decay's factor), got -1"),
        ("step", {"step_size": 0}, f"step_size must be an int >= 1 ({STEPS}), got 0"),
        ("step", {"step_size": 2.5}, f"step_size must be an int >= 1 ({STEPS}), got 2.5"),
        ("exponential", {"gamma": 0}, "gamma must be a finite number in (0, 1] (a decay's factor), got 0"),
        ("exponential", {"gamma": -0.5}, "gamma must be a finite number in (0, 1] (a decay's factor), got -0.5"),
        ("exponential", {"gamma": 1.5}, "gamma must be a finite number in (0, 1] (a decay's factor), got 1.5"),
        ("exponential", {"gamma": math.nan}, "gamma must be a finite number in (0, 1] (a decay's factor), got nan"),
        ("exponential", {"gamma": "nan"}, "gamma must be a finite number in (0, 1] (a decay's factor), got 'nan'"),
        ("cosine", {"eta_min": -1}, "eta_min must be a finite number >= 0 (the cosine's floor), got -1"),
        ("cosine", {"eta_min": math.inf}, "eta_min must be a finite number >= 0 (the cosine's floor), got inf"),
        ("constant", {"warmup": -2}, f"warmup must be an int >= 0 ({STEPS}), got -2"),
    ],
)
def test_a_schedule_option_outside_its_range_is_refused_when_the_config_is_made(schedule, options, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**SMALL, lr_schedule=schedule, schedule_options=options)
    assert str(err.value) == f"schedule {schedule!r} with options {options}: {message}"


@register_schedule("test-zero-after-three")
def _zero_after_three(optimizer, epochs):
    """a user's schedule whose factor drops to 0 after three epochs"""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda finished: 1.0 if finished < 3 else 0.0)


def test_the_learning_rate_must_stay_positive_over_the_runs_epochs():
    TrainConfig(**SMALL, lr_schedule="test-zero-after-three", epochs=3)  # epochs 1-3 train at lr
    with pytest.raises(ValueError) as err:
        TrainConfig(**SMALL, lr_schedule="test-zero-after-three", epochs=4)
    assert str(err.value) == (
        "schedule 'test-zero-after-three' with options {} makes the learning rate 0 at epoch 4 "
        "(--lr 0.01); it must stay finite and > 0 over the run"
    )


def test_changed_options_names_what_differs_from_the_defaults():
    config = TrainConfig(
        **SMALL,
        optimizer="sgd",
        optimizer_options={"momentum": 0.9, "dampening": 0},
        lr_schedule="step",
        schedule_options={"gamma": 0.5, "step_size": 30, "warmup": 2},
    )
    assert changed_options(config) == [
        "--optimizer-option momentum=0.9",
        "--schedule-option gamma=0.5",
        "--schedule-option warmup=2",
    ]
    assert changed_options(TrainConfig(**SMALL, optimizer_options={"betas": (0.9, 0.999)})) == []


def _diverges(monkeypatch):
    monkeypatch.setattr(AEVB, "step", lambda self, batch, total_size: math.nan)


def test_a_divergence_in_the_first_epoch_says_there_is_no_checkpoint_and_names_the_options(tmp_path, monkeypatch):
    config = TrainConfig(
        **SMALL,
        epochs=2,
        optimizer="sgd",
        optimizer_options={"momentum": 0.9},
        lr_schedule="step",
        schedule_options={"gamma": 0.5},
    )
    _diverges(monkeypatch)
    with pytest.raises(TrainingDiverged) as err:
        train(config, tmp_path, progress=False)
    assert str(err.value) == (
        "the loss became nan at epoch 1, step 1, before the first checkpoint was written; training stopped: "
        "lower --lr or revisit --optimizer-option momentum=0.9, --schedule-option gamma=0.5 and start again"
    )
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_later_divergence_names_the_intact_checkpoint(tmp_path, monkeypatch):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)
    _diverges(monkeypatch)
    with pytest.raises(TrainingDiverged) as err:
        train(TrainConfig(**SMALL, epochs=2), tmp_path, resume=True, progress=False)
    assert str(err.value) == (
        f"the loss became nan at epoch 2, step 1; training stopped. The checkpoint of epoch 1 "
        f"({tmp_path / 'checkpoint.pt'}) is intact, but a resume keeps every setting and repeats the same steps: "
        "lower --lr and start a new run in another --run-dir"
    )


def test_a_graph_run_diverging_at_once_says_there_is_no_checkpoint(tmp_path, monkeypatch):
    config = TrainConfig(model="vgae", dataset="planted-partition", hidden=(8,), z_dim=4, epochs=2, lr=0.01)
    _diverges(monkeypatch)
    with pytest.raises(TrainingDiverged) as err:
        train(config, tmp_path, progress=False)
    assert str(err.value) == (
        "the loss became nan at epoch 1, before the first checkpoint was written; "
        "training stopped: lower --lr and start again"
    )


# --- torch's optimizers and schedules by class name (issue #42) --------------------------------------
@pytest.mark.parametrize("name", list(OPTIMIZERS.classes))
def test_every_torch_optimizer_by_its_class_name(name):
    config = TrainConfig(**SMALL, optimizer=name)
    optimizer = configured_optimizer(_params(), config)
    assert type(optimizer) is getattr(torch.optim, name) and optimizer.param_groups[0]["lr"] == config.lr
    assert name in OPTIMIZERS.names() and name in OPTIMIZERS.describe()  # the command line's choices and help


@pytest.mark.parametrize(
    "registry, name, close",
    [
        (OPTIMIZERS, "Nadam", "'NAdam'"),
        (OPTIMIZERS, "radam", "'RAdam'"),
        (LR_SCHEDULES, "OneCycle", "'OneCycleLR'"),
        (LR_SCHEDULES, "cosineannealinglr", "'CosineAnnealingLR'"),
    ],
)
def test_an_unknown_name_is_one_line_naming_the_close_ones(registry, name, close):
    with pytest.raises(ValueError) as err:
        registry.check(name)
    message = str(err.value)
    assert message.startswith(f"unknown {registry.kind} {name!r}; expected one of {registry.registered()} or a class")
    assert f"by its name: {list(registry.classes)}; did you mean {close}" in message and "\n" not in message


@pytest.mark.parametrize(
    "registry, name, why",
    [
        (OPTIMIZERS, "LBFGS", "its step needs a closure"),
        (OPTIMIZERS, "SparseAdam", "it steps sparse gradients only"),
        (LR_SCHEDULES, "LambdaLR", "it takes a Python function"),
        (LR_SCHEDULES, "SequentialLR", "it chains other schedules"),
    ],
)
def test_a_torch_class_that_cannot_train_here_says_why(registry, name, why):
    assert name not in registry.names()
    with pytest.raises(
        ValueError, match=f"^{registry.kind} '{name}' \\(torch.optim.*{name}\\) cannot train here: {why}"
    ):
        registry[name]


def test_a_schedule_class_is_built_over_the_runs_length():
    # CosineAnnealingLR's T_max and OneCycleLR's total_steps are the run's epochs unless given
    cosine = _rates("CosineAnnealingLR", 8)
    assert cosine == pytest.approx([(1 + math.cos(math.pi * e / 8)) / 2 for e in range(8)])
    assert _rates("CosineAnnealingLR", 8, T_max=4)[4] == pytest.approx(0.0)
    assert _rates("CosineAnnealingLR", 8, warmup=2) == pytest.approx(_rates("cosine", 8, warmup=2))
    one_cycle = _rates("OneCycleLR", 10, max_lr=0.5)  # up over 30% of its 10 steps from max_lr / 25, then down
    assert one_cycle[0] == pytest.approx(0.5 / 25) and one_cycle[2] == pytest.approx(0.5) == max(one_cycle)
    multistep = _rates("MultiStepLR", 8, milestones=[2, 5], gamma=0.5)
    assert multistep == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_a_schedule_class_spans_the_run_where_the_run_gives_its_length():
    def spans(schedule, **options):
        return schedule_spans_the_run(TrainConfig(**SMALL, lr_schedule=schedule, schedule_options=options))

    assert spans("CosineAnnealingLR") and spans("OneCycleLR", max_lr=0.1) and spans("cosine")
    assert not spans("CosineAnnealingLR", T_max=20) and not spans("StepLR", step_size=2) and not spans("plateau")


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(lr_schedule="OneCycleLR"),
            "schedule 'OneCycleLR' needs the option(s) ['max_lr'], which the run does not give: "
            "--schedule-option max_lr=VALUE",
        ),
        (
            dict(lr_schedule="CosineAnnealingWarmRestarts"),
            "schedule 'CosineAnnealingWarmRestarts' needs the option(s) ['T_0'], which the run does not give: "
            "--schedule-option T_0=VALUE",
        ),
        (
            dict(lr_schedule="CosineAnnealingLR", schedule_options={"T_max": "8"}),
            f"schedule 'CosineAnnealingLR' with options {{'T_max': '8'}}: T_max must be an int >= 1 ({STEPS}), got '8'",
        ),
        (
            dict(lr_schedule="LinearLR", schedule_options={"last_epoch": 3}),
            "schedule 'LinearLR' with options {'last_epoch': 3}: last_epoch must be left out "
            "(the trainer keeps the schedule's place, and resumes it), got 3",
        ),
        (
            dict(optimizer="NAdam", optimizer_options={"maximize": True}),
            "optimizer 'NAdam' with options {'maximize': True}: maximize must be False (the trainer minimizes the "
            "loss, the negative ELBO; True would train uphill), got True",
        ),
        (
            dict(optimizer="RAdam", optimizer_options={"foreach": True}),
            "optimizer 'RAdam' with options {'foreach': True}: foreach must be left out (the library picks torch's "
            "kernel itself: the fused one where torch has it), got True",
        ),
        (
            dict(optimizer="NAdam", optimizer_options={"momentum_decay": "0.004"}),
            "optimizer 'NAdam' with options {'momentum_decay': '0.004'}: momentum_decay must be a number, "
            "got '0.004' (str)",
        ),
        (dict(optimizer="Rprop", weight_decay=1.0), "optimizer 'Rprop' takes no weight_decay; give weight_decay 0"),
    ],
)
def test_class_names_meet_the_same_checks_in_one_line(settings, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**SMALL, **settings)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
