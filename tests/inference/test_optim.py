"""Optimizers: fused kernels where torch has them, the same update as the per-tensor loop."""

import math

import pytest
import torch

from pyro_vae.inference.optim import OPTIMIZERS, fused_option, iwae_factor, make_optimizer


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



@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("adagrad", torch.optim.Adagrad), ("sgd", torch.optim.SGD),
                                       ("rmsprop", torch.optim.RMSprop)])
def test_every_optimizer_is_torchs_own_with_its_options(name, cls):
    option = {"sgd": {"momentum": 0.9}, "rmsprop": {"alpha": 0.9}, "adagrad": {"lr_decay": 0.01}}.get(
        name, {"betas": (0.5, 0.9)})
    optimizer, _ = make_optimizer(_params(), name, lr=0.05, options=option)
    assert type(optimizer) is cls
    (key, value), = option.items()
    assert optimizer.param_groups[0][key] == value


def _rates(schedule: str, epochs: int, **options) -> list[float]:
    optimizer, scheduler = make_optimizer(_params(), "sgd", lr=1.0, schedule=schedule, epochs=epochs,
                                          schedule_options=options)
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
        (dict(name="sgd", options={"mom": 0.9}), r"optimizer 'sgd' does not take the option\(s\) \['mom'\]; it takes \['momentum'"),
        (dict(name="adam", options={"betas": (2.0, 0.9)}), "optimizer 'adam' with options .*beta"),
        (dict(name="adam", schedule="step", schedule_options={"gama": 0.5}),
         r"schedule 'step' does not take the option\(s\) \['gama'\]; it takes \['step_size', 'gamma'\]"),
        (dict(name="adam", schedule="cosine", schedule_options={"warmup": 1.5}), "warmup must be an int >= 0"),
    ],
)
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(_params(), lr=0.1, **kwargs)
