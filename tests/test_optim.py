"""Optimizers: fused kernels where torch has them, the same update as the per-tensor loop."""

import pytest
import torch

from pyro_vae.inference.optim import OPTIMIZERS, fused_option, make_optimizer


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
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        make_optimizer(_params(), "adam", lr=0.0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1"):
        make_optimizer(_params(), "adam", lr=0.1, weight_decay=-1.0)

