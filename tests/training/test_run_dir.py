"""A run folder under faults (issue #13): two trainers, kills, damaged files, full disks, Ctrl-C."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import SMALL

import pyro_vae.training.run_dir as run_dir_module
from pyro_vae.cli import main
from pyro_vae.training import TrainConfig, train
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.run_dir import (
    RunDirBusyError,
    RunDirWarning,
    clean_stale_temp_files,
    describe_os_error,
    lock_run_dir,
)

TRAIN = [
    "train",
    "--dataset",
    "synthetic",
    "--z-dim",
    "2",
    "--hidden",
    "8",
    "--no-progress",
    "--device",
    "cpu",
    "-k",
    "2",
    "--threads",
    "1",
]


def _cli(*args: str) -> subprocess.Popen:
    """The real command line in a new process (stderr captured)."""
    # SIGINT back to its default: a job started in the background of a non-interactive shell
    # (as CI may run) inherits it ignored, and Python then installs no KeyboardInterrupt handler.
    return subprocess.Popen(
        [sys.executable, "-m", "pyro_vae.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def test_lock_refuses_a_second_holder_and_releases(tmp_path):
    with lock_run_dir(tmp_path / "run"):
        with pytest.raises(RunDirBusyError, match=rf"run/? is in use by another training \(pid {os.getpid()}\)"):
            with lock_run_dir(tmp_path / "run"):
                pass
    with lock_run_dir(tmp_path / "run"):  # released at the end of the block
        pass
    assert not (tmp_path / "run").exists()  # created here and left empty: removed


@pytest.mark.slow
def test_two_trainers_started_together_one_is_refused(tmp_path):
    run = tmp_path / "run"
    procs = [_cli(*TRAIN, "--epochs", "5000", "--run-dir", str(run)) for _ in range(2)]
    try:
        _wait_for(lambda: any(p.poll() is not None for p in procs))
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        err = loser.stderr.read()
        assert loser.returncode == 1 and err.count("\n") == 1, err
        assert f"run folder {run} is in use by another training (pid {winner.pid})" in err
        assert winner.poll() is None
        _wait_for(lambda: (run / "checkpoint.pt").exists())
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
    state = load_checkpoint(run / "checkpoint.pt")  # the winner's run, whole and consistent
    assert json.loads((run / "config.json").read_text()) == json.loads(json.dumps(state["config"]))
    with lock_run_dir(run):  # kill -9 released the lock
        pass
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                "--resume",
                "--epochs",
                str(state["epoch"] + 1),
                "--no-progress",
                "-k",
                "2",
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
        == 0
    )  # the winner's threads


@pytest.mark.slow
@pytest.mark.parametrize("sig, returncode", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])  # ctrl-c, kill
def test_an_interrupt_is_one_line_with_how_to_resume(tmp_path, sig, returncode):
    run = tmp_path / "run"
    proc = _cli(*TRAIN, "--epochs", "5000", "--run-dir", str(run))
    try:
        _wait_for(lambda: (run / "checkpoint.pt").exists())
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == returncode
    assert err == f"pyro-vae: interrupted; resume with pyro-vae train --run-dir {run} --resume\n"
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] >= 1


def _snapshot(run: Path, epoch: int) -> Path:
    return run / "checkpoints" / f"epoch-{epoch:04d}.pt"


SNAPSHOT_DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),  # kill -9 during a non-atomic copy
    "half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "missing": lambda p: p.unlink(),  # kill -9 between the checkpoint and its copy
}


@pytest.mark.parametrize("damage", sorted(SNAPSHOT_DAMAGE))
def test_resume_repairs_the_snapshot_a_kill_interrupted(tmp_path, damage):
    train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False, keep_every=1)
    SNAPSHOT_DAMAGE[damage](_snapshot(tmp_path, 2))
    train(TrainConfig(**SMALL, epochs=3), tmp_path, resume=True, progress=False, keep_every=1)
    assert [load_checkpoint(_snapshot(tmp_path, e))["epoch"] for e in (1, 2, 3)] == [1, 2, 3]


def test_resume_warns_about_a_damaged_older_snapshot(tmp_path):
    train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False, keep_every=1)
    _snapshot(tmp_path, 1).write_bytes(b"")
    with pytest.warns(RunDirWarning, match=r"epoch-0001.pt is damaged and cannot be rebuilt"):
        train(TrainConfig(**SMALL, epochs=3), tmp_path, resume=True, progress=False, keep_every=1)


def test_stale_temp_files_are_cleaned_on_the_next_start(tmp_path):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False, keep_every=1)
    stale = [
        tmp_path / ".checkpoint.pt.k3j2_x.tmp",
        tmp_path / "metrics.tmp",
        tmp_path / ".config.json.a1.tmp",
        tmp_path / ".metrics.csv.zz.tmp",
        tmp_path / "checkpoints" / ".epoch-0001.pt.q9.tmp",
    ]
    kept = [tmp_path / ".eval-epoch0001-k5-n500.json.ab.tmp", tmp_path / "notes.tmp"]  # not the trainer's
    for path in stale + kept:
        path.write_bytes(b"x" * 100)
    train(TrainConfig(**SMALL, epochs=2), tmp_path, resume=True, progress=False, keep_every=1)
    assert [p.exists() for p in stale] == [False] * len(stale)
    assert all(p.exists() for p in kept)
    assert clean_stale_temp_files(tmp_path) == []


def _make_run(tmp_path: Path, epochs: int = 2) -> Path:
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", str(epochs), "--run-dir", str(run)]) == 0
    return run


CONFIG_DAMAGE = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_text(""),
    "garbage": lambda p: p.write_text("{not json"),
    "another run's": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "lr": 0.5, "epochs": 99})),
}


@pytest.mark.parametrize("damage", sorted(CONFIG_DAMAGE))
def test_resume_trusts_the_checkpoint_not_config_json(tmp_path, damage, capsys):
    run = _make_run(tmp_path)
    CONFIG_DAMAGE[damage](run / "config.json")
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", "--no-progress", "-k", "2"]) == 0
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 3 and state["config"]["lr"] == 1e-3
    assert json.loads((run / "config.json").read_text()) == json.loads(json.dumps(state["config"]))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "1"], "--epochs 1 is fewer than the 2 epochs"),
        (
            ["--preset", "iwae"],
            "cannot resume {run} with other settings: hidden (--preset iwae (200, 200), the run has (8,)); z_dim (--preset iwae 50, the run has 2)",
        ),
        (["--lr", "0.5"], "lr (--lr 0.5, the run has 0.001)"),
        (
            ["--hidden", "16", "--seed", "3"],
            "hidden (--hidden (16,), the run has (8,)); seed (--seed 3, the run has 0)",
        ),
    ],
)
def test_resume_with_other_settings_is_refused(tmp_path, capsys, flags, message):
    run = _make_run(tmp_path)
    before = (run / "checkpoint.pt").read_bytes(), (run / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyro-vae: error:") and message.replace("{run}", str(run)) in err and err.count("\n") == 1
    assert ((run / "checkpoint.pt").read_bytes(), (run / "config.json").read_text()) == before


def test_resume_with_the_same_settings_or_epochs_done(tmp_path):
    run = _make_run(tmp_path)
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress", "--hidden", "8", "-k", "2"]) == 0
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "2", "--no-progress", "-k", "2"]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2


def test_disk_full_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    run = _make_run(tmp_path, epochs=1)
    before = (run / "checkpoint.pt").read_bytes()
    fsync = os.fsync

    def full_disk(fd):  # the file system reports ENOSPC when the checkpoint's data reach the disk
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(run_dir_module.os, "fsync", full_disk)
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "2", "--no-progress", "-k", "2"]) == 1
    err = capsys.readouterr().err
    assert err == f"pyro-vae: error: cannot write {run / 'checkpoint.pt'}: no space left on device (ENOSPC)\n"
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "err, line",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/r/checkpoint.pt"),
            "cannot write /r/checkpoint.pt: no space left on device (ENOSPC)",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/r/eval.json"),
            "cannot access /r/eval.json: permission denied (EACCES)",
        ),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system (EROFS)"),
        (FileExistsError("runs/a already holds a run"), "runs/a already holds a run"),
    ],
)
def test_os_errors_are_described_in_words(err, line):
    assert describe_os_error(err) == line


def test_evaluate_on_a_read_only_run_prints_its_number_first(tmp_path, capsys, make_read_only):
    run = _make_run(tmp_path, epochs=1)
    make_read_only(run)
    capsys.readouterr()
    code = main(["evaluate", str(run), "-k", "5", "--num-test", "50", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert "epoch 1: test ELBO (5-sample mean)" in out and "log p(x) (IS, K=5)" in out
    assert code == 1 and err.startswith(f"pyro-vae: error: cannot access {run}/") and err.count("\n") == 1
    assert "Traceback" not in err
    assert main(["plot", str(run), "--device", "cpu", "--out", str(run / "more-figures")]) == 1
    assert capsys.readouterr().err.startswith(f"pyro-vae: error: cannot access {run}/more-figures")


def test_atomic_files_get_the_usual_permissions(tmp_path):
    train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False, keep_every=1)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "checkpoints/epoch-0001.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
