"""A checkpoint whose CRC is valid but whose fields are not what the trainer writes
(hand-made, or mixed from two runs) is one CheckpointError naming the field."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyro_vae.training.loop import TrainConfig, load_run, train

SMALL = dict(dataset="synthetic", z_dim=2, batch_size=100, lr=1e-2, epochs=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-epoch runs with --hidden 50 and --hidden 20 (the same parameter count, other shapes)."""
    root = tmp_path_factory.mktemp("runs")
    for hidden in (50, 20):
        train(TrainConfig(**SMALL, hidden=(hidden,)), root / str(hidden), progress=False)
    return root


def _rewrite(runs, tmp_path, **fields):
    state = load_checkpoint(runs / "50" / "checkpoint.pt")
    state.update(fields)
    state.pop("format")
    (tmp_path / "run").mkdir()
    save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(rng={}), "the field rng.torch must be a uint8 tensor"),
        (dict(rng={"torch": torch.zeros(3, dtype=torch.uint8)}), "rng.torch must be a uint8 tensor of shape"),
        (dict(epoch=-1), "the field epoch must be a non-negative int, got -1"),
        (dict(epoch=1.5), "the field epoch must be a non-negative int, got 1.5"),
        (dict(metrics="garbage"), "the field metrics must be a list of rows"),
        (dict(metrics=["garbage"]), "the field metrics[0] must be a row"),
        (dict(model=[1, 2]), "the field model must be a state dict"),
        (dict(algorithm=None), "the field algorithm must be a dict"),
        (dict(config="x"), "the field config must be a dict"),
        (dict(wall_seconds=float("nan")), "the field wall_seconds must be a finite number"),
        (dict(distributed={"world_size": 2, "ranks": []}), "the field distributed.ranks must be a list of 2"),
        (dict(since_row={"loss": 1.0}), "the field since_row must be {'loss': a number, 'steps': an int >= 0"),
        (dict(since_row={"loss": float("nan"), "steps": 1, "train_seconds": 0.0}), "the field since_row must be"),
        (dict(since_row={"loss": 1.0, "steps": -1, "train_seconds": 0.0}), "the field since_row must be"),
        (dict(process="cpu"), "the field process must be a dict of process settings, got 'cpu'"),
        (dict(process={"jit": "yes"}), "the field process.jit must be True or False, got 'yes'"),
        (dict(process={"threads": 0}), "the field process.threads must be an int >= 1, got 0"),
        (dict(process={"device": 0}), "the field process.device must be a device type, got 0"),
        (
            dict(process={"colour": 1}),
            "the field process.colour must be one of the process settings ['jit', "
            "'flush_denormal', 'threads', 'device'], got 1",
        ),
    ],
)
def test_hand_made_fields_are_named(runs, tmp_path, fields, message):
    run_dir = _rewrite(runs, tmp_path, **fields)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run_dir / "checkpoint.pt")
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_a_checkpoint_with_the_old_key_optimizer_loads_as_algorithm(runs, tmp_path):
    """Checkpoints written before 0.3 held the algorithm's state under ``optimizer``."""
    state = load_checkpoint(runs / "50" / "checkpoint.pt")
    state["optimizer"] = state.pop("algorithm")
    state.pop("format")
    run_dir = tmp_path / "run"
    shutil.copytree(runs / "50", run_dir)
    save_checkpoint(state, run_dir / "checkpoint.pt")
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert "optimizer" in saved and "algorithm" not in saved
    loaded = load_checkpoint(run_dir / "checkpoint.pt")
    assert "optimizer" not in loaded
    assert torch.equal(
        loaded["algorithm"]["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["optimizer"]["state"][0]["exp_avg"]
    )
    resumed = load_run(run_dir)
    assert resumed.config == load_run(runs / "50").config
    with pytest.warns(DeprecationWarning, match=r"Run\.vae is now Run\.program"):
        assert resumed.vae is resumed.program  # the old attribute name, one release


def test_load_run_names_a_bad_device(runs):
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        load_run(runs / "50", device="gpu")


def _swap_optimizer(runs, tmp_path):
    other = load_checkpoint(runs / "20" / "checkpoint.pt")["algorithm"]
    return _rewrite(runs, tmp_path, algorithm=other)


def test_an_optimizer_state_of_another_architecture_is_refused(runs, tmp_path):
    run_dir = _swap_optimizer(runs, tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"algorithm\.optimizer\.state\[0\]\.exp_avg has shape \(20, 64\), the parameter it steps \(50, 64\)",
    ):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)


@pytest.mark.slow
def test_the_optimizer_swap_through_the_cli_is_one_line_not_a_segfault(runs, tmp_path):
    # in a subprocess: on main this resume crashed the interpreter (exit 139)
    run_dir = _swap_optimizer(runs, tmp_path)
    cli = [
        sys.executable,
        "-m",
        "pyro_vae",
        "train",
        "--run-dir",
        str(run_dir),
        "--resume",
        "--epochs",
        "2",
        "--no-progress",
        "--allow-process-change",
    ]  # trained from Python, without the CLI's denormal flush
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pyro-vae: error: checkpoint") and "algorithm.optimizer.state[0].exp_avg" in last


@pytest.mark.parametrize(
    "groups, message",
    [
        (lambda g: g + g, "has 2 parameter group(s), the model's optimizer 1"),
        (lambda g: [{**g[0], "params": g[0]["params"][:-1]}], "parameters per group"),
    ],
)
def test_optimizer_groups_must_fit(runs, tmp_path, groups, message):
    state = load_checkpoint(runs / "50" / "checkpoint.pt")["algorithm"]
    state["optimizer"]["param_groups"] = groups(state["optimizer"]["param_groups"])
    run_dir = _rewrite(runs, tmp_path, algorithm=state)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)


def test_an_intact_checkpoint_still_resumes(runs, tmp_path):
    run_dir = _rewrite(runs, tmp_path)
    run = train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)
    assert [m["epoch"] for m in run.metrics] == [1, 2]


# --- the process settings that change float rounding: recorded, and compared on resume -----
PROCESS = ["--jit", "--threads", "1", "--flush-denormal"]
CLI_RUN = ["--dataset", "synthetic", "--z-dim", "2", "--hidden", "8", "--no-progress", "--device", "cpu", "-k", "2"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A one-epoch run started by the command line with the process flags PROCESS."""
    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *CLI_RUN, "--epochs", "1", *PROCESS, "--run-dir", str(run)]) == 0
    torch.set_num_threads(threads)
    return run


@pytest.fixture
def resumable(cli_run, tmp_path):
    """A copy of ``cli_run`` to resume, torch's thread count restored after the test."""
    threads = torch.get_num_threads()
    yield Path(shutil.copytree(cli_run, tmp_path / "run"))
    torch.set_num_threads(threads)


def _resume(run, flags):
    return main(["train", "--resume", "--run-dir", str(run), "--epochs", "2", *CLI_RUN, *flags])


def test_the_checkpoint_records_the_process_settings(cli_run):
    assert load_checkpoint(cli_run / "checkpoint.pt")["process"] == {
        "jit": True,
        "flush_denormal": True,
        "threads": 1,
        "device": "cpu",
    }


DIFFERENT_PROCESS = [
    (["--no-jit", "--threads", "1", "--flush-denormal"], "--no-jit (the run trained with --jit)", {"jit": False}),
    (["--jit", "--threads", "2", "--flush-denormal"], "--threads 2 (the run trained with --threads 1)", {"threads": 2}),
    (
        ["--jit", "--threads", "1", "--no-flush-denormal"],
        "--no-flush-denormal (the run trained with --flush-denormal)",
        {"flush_denormal": False},
    ),
    (
        ["--no-jit", "--threads", "2", "--flush-denormal"],
        "--no-jit (the run trained with --jit); --threads 2 (the run trained with --threads 1)",
        {"jit": False, "threads": 2},
    ),
]


@pytest.mark.parametrize("flags, differ, _", DIFFERENT_PROCESS, ids=[d for _, d, _ in DIFFERENT_PROCESS])
def test_a_resume_with_other_process_flags_is_refused_in_one_line(resumable, capsys, flags, differ, _):
    before = (resumable / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert _resume(resumable, flags) == 2
    assert capsys.readouterr().err == (
        f"pyro-vae: error: cannot resume {resumable} with other process settings: {differ}. They change the float "
        "rounding, so the continued run would not be the uninterrupted one bit for bit; give the run's flags, or add "
        "--allow-process-change (allow_process_change=True) to continue with these knowingly\n"
    )
    assert (resumable / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("flags, _, changed", DIFFERENT_PROCESS, ids=[d for _, d, _ in DIFFERENT_PROCESS])
def test_a_resume_with_other_process_flags_is_allowed_knowingly(resumable, flags, _, changed):
    assert _resume(resumable, [*flags, "--allow-process-change"]) == 0
    state = load_checkpoint(resumable / "checkpoint.pt")
    assert state["epoch"] == 2
    assert state["process"] == {"jit": True, "flush_denormal": True, "threads": 1, "device": "cpu", **changed}


def test_a_resume_with_the_runs_process_flags_goes_on(resumable):
    assert _resume(resumable, PROCESS) == 0
    assert load_checkpoint(resumable / "checkpoint.pt")["epoch"] == 2


def test_a_finished_run_reused_with_other_process_flags_is_not_compared(resumable):
    # --epochs 1, the run's own: nothing to train, nothing whose rounding could differ
    before = (resumable / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", "--run-dir", str(resumable), *CLI_RUN, "--no-jit", "--threads", "2"]) == 0
    assert (resumable / "checkpoint.pt").read_bytes() == before


def test_a_resume_on_another_kind_of_device_is_refused(runs, tmp_path):
    process = {**load_checkpoint(runs / "50" / "checkpoint.pt")["process"], "device": "cuda"}
    run_dir = _rewrite(runs, tmp_path, process=process)
    with pytest.raises(
        ValueError,
        match=r"other process settings: --device cpu \(the run trained with --device "
        r"cuda\)\. They change the float rounding",
    ):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)
    run = train(
        TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)),
        run_dir,
        resume=True,
        progress=False,
        allow_process_change=True,
    )
    assert [m["epoch"] for m in run.metrics] == [1, 2]


def test_a_python_resume_compares_the_resolved_jit(runs, tmp_path):
    # the run was trained with jit=None, which compiles this built-in program: an eager resume differs
    run_dir = _rewrite(runs, tmp_path)
    assert load_checkpoint(run_dir / "checkpoint.pt")["process"]["jit"] is True
    with pytest.raises(ValueError, match=r"--no-jit \(the run trained with --jit\)"):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False, jit=False)


def test_a_checkpoint_written_before_the_process_was_recorded_resumes_with_any_flags(cli_run, tmp_path):
    # as the committed long runs' checkpoints: nothing recorded, nothing to compare
    state = load_checkpoint(cli_run / "checkpoint.pt")
    del state["process"], state["format"]
    run = tmp_path / "old"
    run.mkdir()
    save_checkpoint(state, run / "checkpoint.pt")
    threads = torch.get_num_threads()
    try:
        assert _resume(run, ["--no-jit", "--threads", "2", "--no-flush-denormal"]) == 0
    finally:
        torch.set_num_threads(threads)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2
    assert state["process"] == {"jit": False, "flush_denormal": False, "threads": 2, "device": "cpu"}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_named_in_one_line(runs, tmp_path, capsys, value):
    model = dict(load_checkpoint(runs / "50" / "checkpoint.pt")["model"])
    model["decoder.0.bias"] = model["decoder.0.bias"].clone().fill_(value)  # as a run that had diverged
    run_dir = _rewrite(runs, tmp_path, model=model)
    message = (
        f"checkpoint {run_dir / 'checkpoint.pt'}: the model state holds NaN or infinite values in "
        "decoder.0.bias (written by a run that had diverged, or damaged); use another checkpoint"
    )
    with pytest.raises(CheckpointError) as raised:  # on main: Pyro's dump of a distribution's arguments, at first use
        load_run(run_dir)
    assert str(raised.value) == message
    assert main(["evaluate", str(run_dir), "-k", "2", "--device", "cpu"]) == 1
    assert capsys.readouterr().err == f"pyro-vae: error: {message}\n"


@pytest.mark.parametrize(
    "config, message",
    [  # found by tests/test_fuzz.py
        (dict(model=[1]), "{path} holds a run of the model [1], which is not registered here; import the module"),
        (dict(lr=float("nan")), "checkpoint {path} holds an invalid config: lr must be a finite number > 0, got nan"),
    ],
)
def test_a_hand_made_config_is_named_with_its_file(runs, tmp_path, config, message):
    saved = load_checkpoint(runs / "50" / "checkpoint.pt")["config"]
    run_dir = _rewrite(runs, tmp_path, config={**saved, **config})
    with pytest.raises(CheckpointError) as raised:  # on main: "unhashable type: 'list'"; a ValueError naming no file
        load_run(run_dir)
    assert str(raised.value).startswith(message.format(path=run_dir / "checkpoint.pt"))
    assert len(str(raised.value).splitlines()) == 1
