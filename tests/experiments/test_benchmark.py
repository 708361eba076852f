"""The benchmark's hand-written sides compute the same numbers as pyro_vae's."""

import math

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.experiments.benchmark import (
    handwritten_log_px,
    handwritten_step,
    pyro_vae_step,
    run_benchmark,
    run_eval_benchmark,
)
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.models.vae import VAE


@pytest.mark.slow
@pytest.mark.parametrize("num_particles", [1, 5])
def test_handwritten_and_pyro_vae_steps_estimate_the_same_bound(num_particles):
    # the mean loss over many steps at a tiny learning rate: both estimate -(N/M) * bound
    torch.manual_seed(0)
    vae = VAE(784, z_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((20, 784), 0.3))
    sides = [handwritten_step(vae, 1e-12, 20, num_particles), pyro_vae_step(vae, 1e-12, 20, num_particles)]
    losses = [torch.tensor([step(x) for _ in range(300)]) for step in sides]
    means, ses = [d.mean() for d in losses], [d.std() / math.sqrt(len(d)) for d in losses]
    assert abs(means[0] - means[1]) < 5 * math.hypot(*ses)


def test_handwritten_log_px_matches_evaluate():
    torch.manual_seed(0)
    vae = VAE(784, z_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((30, 784), 0.3))
    torch.manual_seed(1)
    ours = evaluate(vae, x.split(10), num_samples=400, chunk_size=100).log_px
    torch.manual_seed(1)  # the same draws of eps, in the same order
    floor = handwritten_log_px(vae, x, 400, 10, 100)
    assert ours == pytest.approx(floor, abs=1e-3)


def test_benchmarks_report_both_sides(tmp_path):
    train = run_benchmark(hidden=(8,), z_dim=2, batch_size=10, steps=2, rounds=1, num_particles=3)
    ev = run_eval_benchmark(hidden=(8,), z_dim=2, num_images=10, num_samples=20, batch_size=5, chunk_size=10, rounds=1)
    for result in (train, ev):
        assert result["ratio"] == pytest.approx(result["pyro_vae_ms"] / result["handwritten_ms"])
        assert result["overhead_ms"] == pytest.approx(result["pyro_vae_ms"] - result["handwritten_ms"])
    assert ev["pyro_vae_log_px"] < 0 and ev["handwritten_log_px"] < 0
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "benchmark",
                "--evaluate",
                "--hidden",
                "8",
                "--z-dim",
                "2",
                "-k",
                "20",
                "--num-images",
                "10",
                "--rounds",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file()
    assert main(["benchmark", "--num-images", "0"]) == 2
