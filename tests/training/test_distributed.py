"""Training on several processes (gloo, CPU): torchrun's environment, DistributedContext,
gradient averaging, rank-0 files, per-process state in checkpoints, sharded evaluation."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
import torch.multiprocessing as mp
from support import SMALL

from pyro_vae import VAE, TrainConfig, register_model, train
from pyro_vae.cli import main
from pyro_vae.data import make_synthetic
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.distributed import session

ROOT = Path(__file__).resolve().parents[2]
# Adam ignores a common scale of the gradients; weight decay (a N(0, I) prior) does not,
# so a gradient summed instead of averaged over processes would show.
POINT = dict(SMALL, model="test-point-posterior", weight_decay=1.0)


@register_model("test-point-posterior", replace=True)
class PointPosterior(VAE):
    """The VAE with q(z|x) a point mass at mu(x): a deterministic objective, so runs on
    different numbers of processes can be compared to float tolerance."""

    def posterior(self, x, **context):
        return dist.Delta(self.encode(x)[0]).to_event(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    """One process of the runs that test_two_processes compares (rank ``rank`` of ``world_size``)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    root = Path(root)
    with session("cpu") as (context, device):
        point = TrainConfig(**POINT, epochs=2)
        run = train(point, root / "point-2", progress=False, distributed=context)
        torch.save({"model": run.program.state_dict(), "metrics": run.metrics}, root / f"point-2-rank{rank}.pt")
        noisy = TrainConfig(**SMALL, estimator="score-baseline", epochs=2)
        train(noisy, root / "straight", progress=False, distributed=context)
        train(
            TrainConfig(**{**SMALL, "estimator": "score-baseline"}, epochs=1),
            root / "resumed",
            progress=False,
            distributed=context,
        )
        train(noisy, root / "resumed", resume=True, progress=False, distributed=context)
        torch.save(torch.get_rng_state(), root / f"rng-rank{rank}.pt")


def _strip(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in metrics]


@pytest.mark.slow
def test_two_processes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)

    # Two processes, each on half of every global batch of 100, match one process on the same
    # global batches: same parameters, train and test ELBO (the objective has no sampling noise).
    one = train(TrainConfig(**POINT, epochs=2), tmp_path / "point-1", progress=False)
    two = load_checkpoint(tmp_path / "point-2" / "checkpoint.pt")
    for name, value in one.program.state_dict().items():
        torch.testing.assert_close(two["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    for rank in (0, 1):  # every process holds the same parameters and metrics
        own = torch.load(tmp_path / f"point-2-rank{rank}.pt")
        assert all(torch.equal(own["model"][k], v) for k, v in two["model"].items())
        assert _strip(own["metrics"]) == _strip(two["metrics"])
    for a, b in zip(_strip(one.metrics), _strip(two["metrics"])):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a)
    assert [m["samples_seen"] for m in two["metrics"]] == [2000, 4000]

    # The processes draw independent noise; a resumed run continues each of them exactly
    # (torch's RNG and the score-function baselines are per process).
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    assert _strip(resumed["metrics"]) == _strip(straight["metrics"])
    assert not torch.equal(torch.load(tmp_path / "rng-rank0.pt"), torch.load(tmp_path / "rng-rank1.pt"))
    ranks = straight["distributed"]["ranks"]
    assert straight["distributed"]["world_size"] == 2 and len(ranks) == 2
    (baselines0,), (baselines1,) = ranks[0]["param_stores"], ranks[1]["param_stores"]
    assert baselines0 and baselines0.keys() == baselines1.keys()
    assert not all(torch.equal(baselines0[k], baselines1[k]) for k in baselines0)  # each process its own

    # Only rank 0 wrote: one config, one metrics file; no stray files.
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.json",
        "metrics.csv",
    ]
    # A two-process checkpoint resumes on two processes only.
    with pytest.raises(ValueError, match="written by a run on 2.*resume it with 2"):
        train(
            TrainConfig(**{**SMALL, "estimator": "score-baseline"}, epochs=3),
            tmp_path / "resumed",
            resume=True,
            progress=False,
        )


def test_sharded_batches_make_the_global_batch():
    data = make_synthetic(num_train=40, num_test=10)
    data.binarize = True  # dynamic binarization: one draw for the global batch, split
    whole = list(data.train_batches(8, torch.Generator().manual_seed(3), keys=("x", "y")))
    parts = [
        list(data.train_batches(8, torch.Generator().manual_seed(3), keys=("x", "y"), shard=(r, 2))) for r in (0, 1)
    ]
    for k, batch in enumerate(whole):
        for key in ("x", "y"):
            assert torch.equal(parts[0][k][key], batch[key][0::2])
            assert torch.equal(parts[1][k][key], batch[key][1::2])
    test = [torch.cat([b["x"] for b in data.test_batches(3, shard=(r, 3))]) for r in range(3)]
    assert sorted(map(len, test)) == [3, 3, 4]
    assert torch.equal(torch.cat(test).sort(0).values, data.test.sort(0).values)
    with pytest.raises(ValueError, match="batch_size=8 is not divisible by the 3 processes"):
        data.train_batches(8, torch.Generator(), shard=(0, 3))


@pytest.mark.slow
def test_torchrun_runs_the_command_line(tmp_path):
    """``torchrun -m pyro_vae train`` on two processes: one run folder, written by rank 0;
    ``evaluate`` then shards the test set."""
    env = {**os.environ, "PYRO_VAE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "pyro_vae",
    ]
    run_dir = tmp_path / "run"
    flags = ["--dataset", "synthetic", "--hidden", "16", "--z-dim", "2", "--num-train", "400", "--device", "cpu"]
    result = subprocess.run(
        [*torchrun, "train", *flags, "--epochs", "1", "-k", "4", "--run-dir", str(run_dir), "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory:") == 1 and "(2 processes)" in result.stdout
    assert (run_dir / "eval-epoch0001-k4-n500.json").is_file()
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 2
    assert (run_dir / "figures").is_dir()


def test_other_commands_refuse_torchrun(tmp_path, monkeypatch, capsys):
    for name, value in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1").items():
        monkeypatch.setenv(name, value)
    assert main(["plot", str(tmp_path)]) == 2
    assert "plot runs on one process; only train and evaluate run under torchrun" in capsys.readouterr().err


def test_batch_size_must_split_evenly(tmp_path):
    from pyro_vae.training.distributed import DistributedContext

    three = DistributedContext(rank=0, world_size=3)  # refused before any collective is needed
    with pytest.raises(ValueError, match="batch_size=100 is not divisible by the 3 processes"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False, distributed=three)
