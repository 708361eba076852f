"""Regression table of issue #26: every bad input a hostile user tried that got a traceback,
an unclear message or nothing at all now gets one line naming the bad value."""

from collections.abc import Sequence

import numpy as np
import pytest
import scipy.io
import torch

from pyro_vae.cli import main
from pyro_vae.cli.errors import interrupted_message
from pyro_vae.data import CorruptDataError, read_frey_mat
from pyro_vae.inference.evaluate import evaluate, importance_bounds
from pyro_vae.models import MODELS, DataSpec, build_model, register_model
from pyro_vae.models.vae import VAE
from pyro_vae.training.distributed import lost_peer_message
from pyro_vae.training.loop import TrainConfig, load_run, train
from pyro_vae.validation import ArgumentTypeError, check_value

SYNTHETIC = ["--dataset", "synthetic", "--z-dim", "2", "--hidden", "8", "--no-progress", "--device", "cpu", "-k", "2"]
HUGE = 1180591620717411303424


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), run, progress=False)
    return run


# --- the command line: argv -> the one line it prints -----------------------------------
CLI = [
    (
        ["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=-3"],
        "num_components must be >= 1, got -3",
    ),
    (
        ["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=abc"],
        "num_components must be an int, got 'abc' (str)",
    ),
    (
        ["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=0"],
        "num_components must be >= 1, got 0",
    ),
    (["train", *SYNTHETIC, "--init-std", "1e6"], "init_std must be <= 1.0: weights that large saturate every unit"),
    (["train", *SYNTHETIC, "--seed", str(HUGE)], f"seed must lie in [-2**62, 2**62), got {HUGE}"),
    (["train", *SYNTHETIC, "--epochs", str(10**20)], "epochs=100,000,000,000,000,000,000 (one metrics row each) needs"),
    (
        ["train", "--preset", "kipf", "--model", "vgae", "--dataset", "planted-partition", "--hidden", "0"],
        "--hidden must be at least 1, got 0",
    ),
    (
        [
            "train",
            "--resume",
            "--run-dir",
            "{run}",
            "--model",
            "vgae",
        ],  # the other setting is the reason, before its fit
        "cannot resume {run} with other settings: model (--model 'vgae', the run has 'vae')",
    ),
    (
        ["evaluate", "{run}", "-k", "2000000000", "--chunk-size", "2000000000", "--num-test", "10", "--device", "cpu"],
        "a pass of 10 data x 2,000,000,000 samples (-k / --chunk-size)",
    ),
    (["benchmark", "--hidden", "3000000000", "--steps", "1", "--rounds", "1"], "the VAE 784-3000000000-20"),
    (["variance", "--estimators", "reparam", "reparam"], "estimators ['reparam'] are named more than once"),
    # issue #39: a resume on a process that rounds otherwise (the run was trained from Python: jit, no flush)
    (
        ["train", "--resume", "--run-dir", "{run}", "--epochs", "2", "--no-jit", "--no-flush-denormal"],
        "cannot resume {run} with other process settings: --no-jit (the run trained with --jit). They change the float "
        "rounding, so the continued run would not be the uninterrupted one bit for bit; give the run's flags, or add "
        "--allow-process-change (allow_process_change=True) to continue with these knowingly",
    ),
    # issue #39: optimizer and schedule options, parsed as Python literals (nan and inf floats), checked before any work
    *[
        (["train", *SYNTHETIC, *flags], message)
        for flags, message in [
            (
                ["--lr-schedule", "step", "--schedule-option", "gamma=-1"],
                "schedule 'step' with options {'gamma': -1}: gamma must be a finite number in (0, 1] (a decay's factor), got -1",
            ),
            (
                ["--lr-schedule", "exponential", "--schedule-option", "gamma=0"],
                "schedule 'exponential' with options {'gamma': 0}: gamma must be a finite number in (0, 1]",
            ),
            (
                ["--lr-schedule", "exponential", "--schedule-option", "gamma=-0.5"],
                "schedule 'exponential' with options {'gamma': -0.5}: gamma must be a finite number in (0, 1]",
            ),
            (
                ["--lr-schedule", "exponential", "--schedule-option", "gamma=nan"],
                "schedule 'exponential' with options {'gamma': nan}: gamma must be a finite number in (0, 1] (a decay's "
                "factor), got nan",
            ),
            (
                ["--lr-schedule", "cosine", "--schedule-option", "eta_min=-1"],
                "schedule 'cosine' with options {'eta_min': -1}: eta_min must be a finite number >= 0 (the cosine's floor), "
                "got -1",
            ),
            (
                ["--lr-schedule", "step", "--schedule-option", "step_size=0"],
                "schedule 'step' with options {'step_size': 0}: step_size must be an int >= 1 (epochs, or optimizer steps with schedule_interval='step'), got 0",
            ),
            (
                ["--lr-schedule", "step", "--schedule-option", "step_size=inf"],
                "schedule 'step' with options {'step_size': inf}: step_size must be an int >= 1 (epochs, or optimizer steps with schedule_interval='step'), got inf",
            ),
            (
                ["--schedule-option", "warmup=-inf"],
                "schedule 'constant' with options {'warmup': -inf}: warmup must be an int >= 0 (epochs, or optimizer steps with schedule_interval='step'), got -inf",
            ),
            (
                ["--optimizer-option", "maximize=True"],
                "optimizer 'adam' with options {'maximize': True}: maximize must be False (the trainer minimizes the loss, "
                "the negative ELBO; True would train uphill), got True",
            ),
            (
                ["--optimizer-option", "eps=1e400"],
                "optimizer 'adam' with options {'eps': inf}: eps must be a finite number > 0",
            ),
            (
                ["--optimizer-option", "foreach=True"],
                "optimizer 'adam' with options {'foreach': True}: foreach must be left out (the library picks torch's "
                "kernel itself: the fused one where torch has it), got True",
            ),
            (
                ["--optimizer-option", "differentiable=True"],
                "optimizer 'adam' with options {'differentiable': True}: differentiable must be left out",
            ),
            (
                ["--optimizer-option", "fused=False"],
                "optimizer 'adam' with options {'fused': False}: fused must be left out",
            ),
            (
                ["--optimizer-option", "betas=(0.9,)"],
                "optimizer 'adam' with options {'betas': (0.9,)}: betas must be a pair (beta1, beta2) of numbers in [0, 1), "
                "got (0.9,)",
            ),
            (
                ["--optimizer", "sgd", "--optimizer-option", "dampening=-1"],
                "optimizer 'sgd' with options {'dampening': -1}: dampening must be a finite number in [0, 1], got -1",
            ),
            (
                ["--optimizer", "sgd", "--optimizer-option", "momentum=inf"],
                "optimizer 'sgd' with options {'momentum': inf}: momentum must be a finite number in [0, 1), got inf",
            ),
            (
                ["--optimizer", "rmsprop", "--optimizer-option", "alpha=2"],
                "optimizer 'rmsprop' with options {'alpha': 2}: alpha must be a finite number in [0, 1)",
            ),
        ]
    ],
]


@pytest.mark.parametrize("argv, message", CLI, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI])
def test_cli_bad_input_is_one_line(argv, message, run_dir, tmp_path, capsys):
    argv = [a.replace("{run}", str(run_dir)) for a in argv]
    if argv[0] == "train" and "--run-dir" not in argv:
        argv += ["--run-dir", str(tmp_path / "new")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyro-vae: error: "), err
    assert message.replace("{run}", str(run_dir)) in err


# --- the Python API: a call -> its exception and message ---------------------------------
def _vae():
    return VAE(4, z_dim=2, hidden=(3,))


def _bounds(chunk_size):
    vae = _vae()
    return importance_bounds(vae.model, vae.guide, torch.ones(2, 4), 10, chunk_size=chunk_size)


def _truncated_frey(tmp_path):
    path = tmp_path / "frey_rawface.mat"
    scipy.io.savemat(path, {"ff": np.zeros((560, 10), dtype=np.uint8)})
    path.write_bytes(path.read_bytes()[:300])
    return read_frey_mat(path)


API = [
    (lambda run, tmp: load_run(run, device="gpu"), ValueError, "device 'gpu' is not a torch device"),
    (lambda run, tmp: _bounds(0), ValueError, "chunk_size must be >= 1, got 0"),
    (lambda run, tmp: _bounds(-1), ValueError, "chunk_size must be >= 1, got -1"),
    (
        lambda run, tmp: importance_bounds(_vae().model, _vae().guide, torch.ones(0, 4), 10),
        ValueError,
        "x holds no data: an empty batch of shape (0, 4)",
    ),
    (
        lambda run, tmp: evaluate(_vae(), [[1, 2]], 10),
        TypeError,
        "batch 0 must be a tensor x or a dict with x, got [1, 2]",
    ),
    (
        lambda run, tmp: train(dict(dataset="synthetic"), tmp / "r"),
        TypeError,
        "config must be a TrainConfig, got {'dataset'",
    ),
    (
        lambda run, tmp: train(TrainConfig(dataset="synthetic"), tmp / "r", keep_every=1.5),
        TypeError,
        "keep_every must be an int, got 1.5",
    ),
    (lambda run, tmp: TrainConfig(lr="1e-3"), TypeError, "lr must be a number, got '1e-3' (str)"),
    (lambda run, tmp: TrainConfig(epochs=2.5), TypeError, "epochs must be an int, got 2.5 (float)"),
    (lambda run, tmp: TrainConfig(epochs=True), TypeError, "epochs must be an int, got True (bool)"),
    (lambda run, tmp: TrainConfig(batch_size=2.0), TypeError, "batch_size must be an int, got 2.0 (float)"),
    (lambda run, tmp: TrainConfig(seed=1.5), TypeError, "seed must be an int, got 1.5 (float)"),
    (lambda run, tmp: TrainConfig(num_labels=-5), ValueError, "num_labels must be >= 1, got -5"),
    (lambda run, tmp: VAE(10, encoder="enc"), TypeError, "encoder must be a Module or None, got 'enc' (str)"),
    (lambda run, tmp: VAE(10, prefix=123), TypeError, "prefix must be a str, got 123 (int)"),
    (
        lambda run, tmp: VAE(10, z_dim=10**12),
        ValueError,
        "the VAE 10-500-1000000000000 (1,502,000,000,011,010 weights) needs",
    ),
    (lambda run, tmp: register_model("test-int")(int), TypeError, "int is not a PyroModule subclass"),
    (lambda run, tmp: register_model("test-fn")(lambda: 0), TypeError, "a factory must take (spec, **options)"),
    (lambda run, tmp: register_model("a b")(VAE), ValueError, "a model name must be lower-case letters"),
    (lambda run, tmp: _truncated_frey(tmp), CorruptDataError, "frey_rawface.mat is truncated or unreadable"),
]


@pytest.mark.parametrize("call, error, message", API, ids=[m[:40] for _, _, m in API])
def test_api_bad_input_is_named(call, error, message, run_dir, tmp_path):
    with pytest.raises(error) as raised:
        call(run_dir, tmp_path)
    assert message in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_a_factory_returning_no_module_is_refused_when_built():
    register_model("test-zero", replace=True)(lambda spec, **options: 0)
    try:
        with pytest.raises(TypeError, match="model 'test-zero': its factory returned 0, not a PyroModule"):
            build_model("test-zero", DataSpec((4,)))
    finally:
        MODELS._entries.pop("test-zero")


def test_a_factory_building_a_vae_trains_like_a_class():
    register_model("test-factory", replace=True)(lambda spec, **options: VAE(spec.x_shape, **options))
    try:
        assert isinstance(build_model("test-factory", DataSpec((4,)), z_dim=2, hidden=(3,)), VAE)
    finally:
        MODELS._entries.pop("test-factory")


def test_a_lost_peer_is_one_line_with_how_to_resume(run_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    err = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection reset by peer [127.0.0.1]:1")
    assert lost_peer_message(err, "train", run_dir) == (
        "process 1 of 2 lost a peer process, which died or was killed (Connection reset by peer); resume with "
        f"torchrun --nproc_per_node 2 -m pyro_vae train --run-dir {run_dir} --resume (the same number of processes)"
    )
    assert lost_peer_message(RuntimeError("out of bounds"), "train", run_dir) is None


@pytest.mark.parametrize(
    "world_size, command", [("1", "pyro-vae train"), ("3", "torchrun --nproc_per_node 3 -m pyro_vae train")]
)
def test_an_interrupted_run_says_how_to_resume_it(run_dir, monkeypatch, world_size, command):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    assert interrupted_message("train", run_dir) == f"interrupted; resume with {command} --run-dir {run_dir} --resume"


@pytest.mark.parametrize(
    "value, annotation, accepted",
    [
        (3, int, True),
        (True, int, False),
        (3.0, int, False),
        (3, float, True),
        (True, float, False),
        ("1e-3", float, False),
        (None, int | None, True),
        ((1, 2), tuple[int, ...], True),
        ([1, "2"], tuple[int, ...], False),
        ("ab", Sequence[int], False),
        ({"a": 1}, dict, True),
    ],
)
def test_the_generic_checker_reads_annotations(value, annotation, accepted):
    if accepted:
        check_value("v", value, annotation)
    else:
        with pytest.raises(ArgumentTypeError, match="^v must be "):
            check_value("v", value, annotation)


# --- issue #39: the unclear messages, tracebacks and silent acceptances left; each message exact ------
def _dataset(**changes):
    from pyro_vae.data import Dataset

    x = torch.rand(20, 4)
    parts = dict(
        name="d",
        train=x,
        test=x[:5],
        train_labels=None,
        test_labels=None,
        image_shape=(1, 2, 2),
        likelihood="bernoulli",
    )
    return Dataset(**{**parts, **changes})


def _build(device):
    from pyro_vae.training import build_run

    return build_run(TrainConfig(dataset="synthetic", z_dim=2, hidden=(3,)), device=device)


API_39 = [
    (
        lambda tmp: _dataset(test=torch.rand(0, 4)),
        ValueError,
        "Dataset 'd': the test set is empty (shape (0, 4)); give it some test data (evaluation and every metrics "
        "row use them)",
    ),
    (
        lambda tmp: _dataset(train=np.random.rand(20, 4)),
        TypeError,
        "Dataset 'd': train must be a torch.Tensor of shape (N, *x_shape), got a value of type ndarray; convert it "
        "with torch.as_tensor(train, dtype=torch.float32)",
    ),
    (
        lambda tmp: _dataset(test=[[0.5] * 4] * 5),
        TypeError,
        "Dataset 'd': test must be a torch.Tensor of shape (N, *x_shape), got a value of type list; convert it "
        "with torch.as_tensor(test, dtype=torch.float32)",
    ),
    (
        lambda tmp: _dataset(train_labels=[0] * 20),
        ValueError,
        "Dataset 'd': train_labels must be None or an integer tensor of shape (20,), one label per train datum, "
        "got a value of type list",
    ),
    (
        lambda tmp: _dataset(test_labels=torch.zeros(3, dtype=torch.long)),
        ValueError,
        "Dataset 'd': test_labels must be None or an integer tensor of shape (5,), one label per test datum, "
        "got a tensor of shape (3,), torch.int64",
    ),
    (
        lambda tmp: _dataset(image_shape=(1, 3, 3)),
        ValueError,
        "Dataset 'd': image_shape must be (channels, height, width) holding one datum's 4 values (x_shape (4,)), "
        "got (1, 3, 3)",
    ),
    (
        lambda tmp: _dataset(test=torch.rand(5, 5)),
        ValueError,
        "Dataset 'd': train holds data of shape (4,) and test of shape (5,); both must be (N, *x_shape) with one "
        "x_shape",
    ),
    (
        lambda tmp: TrainConfig.from_dict([1, 2]),
        TypeError,
        "a config must be a dict of TrainConfig fields, got [1, 2] (list)",
    ),
    (
        lambda tmp: TrainConfig(dataset="synthetic", epochs=2, kl_warmup=10),
        ValueError,
        "kl_warmup=10 epochs is longer than the run's epochs=2: the latent terms would never reach their full "
        "weight; give kl_warmup <= 2 or more epochs",
    ),
    (
        lambda tmp: train(TrainConfig(dataset="synthetic", epochs=1), tmp / "r", device="gpu"),
        ValueError,
        "device 'gpu' is not a torch device: expected cpu, cuda or cuda:N",
    ),
    (lambda tmp: _build("gpu"), ValueError, "device 'gpu' is not a torch device: expected cpu, cuda or cuda:N"),
    # raised inside a traced program: Pyro appended "Trace Shapes:" and two more empty lines
    (
        lambda tmp: importance_bounds(_vae().model, _vae().guide, torch.ones(2, 5), 10),
        ValueError,
        "x must have shape (batch, 4), got (2, 5)",
    ),
    (
        lambda tmp: _vae().reconstruct(torch.full((2, 4), 2.0)),
        ValueError,
        "Bernoulli likelihood expects data in [0, 1], got values in [2, 2]; rescale the data (e.g. divide 8-bit "
        "pixels by 255) or use likelihood='gaussian'",
    ),
    (lambda tmp: _vae().generate(0), ValueError, "num_generated must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("call, error, message", API_39, ids=[m[:40] for _, _, m in API_39])
def test_api_bad_input_of_issue_39_is_one_exact_line(call, error, message, tmp_path):
    with pytest.raises(error) as raised:
        call(tmp_path)
    assert str(raised.value) == message


CLI_39 = [
    (["train", *SYNTHETIC, "--lr", "-1e-3"], "--lr must be a finite number > 0, got -0.001"),
    (["train", *SYNTHETIC, "--lr", "-inf"], "--lr must be a finite number > 0, got -inf"),
    (
        ["train", *SYNTHETIC, "--epochs", "2", "--kl-warmup", "10"],
        "kl_warmup=10 epochs is longer than the run's epochs=2: the latent terms would never reach their full "
        "weight; give kl_warmup <= 2 or more epochs",
    ),
    (
        ["probe", "{run}", "--classifiers", "logistic", "logistic", "--num-labels", "4", "--device", "cpu"],
        "classifiers ['logistic'] are named more than once; each classifier is one row per draw of the labelled images",
    ),
    (
        ["probe", "{run}", "--num-labels", "4", "4", "--device", "cpu"],
        "num_labels [4] are named more than once; each number of labels is one set of draws",
    ),
    (
        ["evaluate", "{run}", "--marginal", "-k", "2", "--device", "cpu"],
        "--marginal (marginal=True) gives a program of labelled data x without its labels y, and the model 'vae' "
        "takes no labels (data ['x']): its report is of log p(x) already; drop --marginal",
    ),
]


@pytest.mark.parametrize("argv, message", CLI_39, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_39])
def test_cli_bad_input_of_issue_39_is_one_exact_line(argv, message, run_dir, tmp_path, capsys):
    argv = [a.replace("{run}", str(run_dir)) for a in argv]
    if argv[0] == "train":
        argv += ["--run-dir", str(tmp_path / "new")]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"pyro-vae: error: {message}\n"
    assert not list(run_dir.glob("eval-*-marginal.json")) and not (tmp_path / "new").exists()


def test_a_pass_too_big_for_memory_leads_with_the_memory_reason(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "-k", "2000000000", "--chunk-size", "2000000000", "--num-test", "10"]) == 2
    assert capsys.readouterr().err.startswith("pyro-vae: error: a pass of 10 data x 2,000,000,000 samples")


def test_a_resume_with_another_schedule_names_the_schedule_not_its_options(tmp_path, capsys):
    # the run's gamma does not go with cosine: the reason to refuse is still the other schedule
    run = tmp_path / "step"
    train(
        TrainConfig(
            dataset="synthetic", z_dim=2, hidden=(8,), epochs=1, lr_schedule="step", schedule_options={"gamma": 0.5}
        ),
        run,
        progress=False,
    )
    assert main(["train", "--resume", "--run-dir", str(run), "--lr-schedule", "cosine", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"pyro-vae: error: cannot resume {run} with other settings: lr_schedule (--lr-schedule 'cosine', the run "
        "has 'step'). --resume takes every setting from the checkpoint; drop these flags, or start a new run in "
        "another --run-dir\n"
    )
