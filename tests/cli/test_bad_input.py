"""Regression table of issue #26: every bad input a hostile user tried that got a traceback,
an unclear message or nothing at all now gets one line naming the bad value."""

from collections.abc import Sequence

import numpy as np
import pytest
import scipy.io
import torch

from pyro_vae.cli import main
from pyro_vae.data import CorruptDataError, read_frey_mat
from pyro_vae.inference.evaluate import evaluate, importance_bounds
from pyro_vae.models import MODELS, DataSpec, build_model, register_model
from pyro_vae.models.vae import VAE
from pyro_vae.training.distributed import lost_peer_message
from pyro_vae.training.loop import TrainConfig, load_run, train
from pyro_vae.cli.errors import interrupted_message
from pyro_vae.validation import ArgumentTypeError, check_value

SYNTHETIC = ["--dataset", "synthetic", "--z-dim", "2", "--hidden", "8", "--no-progress", "--device", "cpu",
             "-k", "2"]
HUGE = 1180591620717411303424


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), run, progress=False)
    return run


# --- the command line: argv -> the one line it prints -----------------------------------
CLI = [
    (["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=-3"],
     "num_components must be >= 1, got -3"),
    (["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=abc"],
     "num_components must be an int, got 'abc' (str)"),
    (["train", *SYNTHETIC, "--model", "mog-prior", "--model-option", "num_components=0"],
     "num_components must be >= 1, got 0"),
    (["train", *SYNTHETIC, "--init-std", "1e6"], "init_std=1000000.0 is above 1.0"),
    (["train", *SYNTHETIC, "--seed", str(HUGE)], f"seed must lie in [-2**62, 2**62), got {HUGE}"),
    (["train", *SYNTHETIC, "--epochs", str(10**20)], "epochs=100,000,000,000,000,000,000 (one metrics row each) needs"),
    (["train", "--preset", "kipf", "--model", "vgae", "--dataset", "planted-partition", "--hidden", "0"],
     "--hidden must be at least 1, got 0"),
    (["train", "--resume", "--run-dir", "{run}", "--model", "vgae"],
     "the model 'vgae' trains on graph data and the data set 'synthetic' holds vectors"),
    (["evaluate", "{run}", "-k", "2000000000", "--chunk-size", "2000000000", "--num-test", "10", "--device", "cpu"],
     "a pass of 10 data x 2,000,000,000 samples (-k / --chunk-size)"),
    (["benchmark", "--hidden", "3000000000", "--steps", "1", "--rounds", "1"], "the VAE 784-3000000000-20"),
    (["variance", "--estimators", "reparam", "reparam"], "estimators ['reparam'] are named more than once"),
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
    (lambda run, tmp: evaluate(_vae(), [[1, 2]], 10), TypeError, "batch 0 must be a tensor x or a dict with x, got [1, 2]"),
    (lambda run, tmp: train(dict(dataset="synthetic"), tmp / "r"), TypeError, "config must be a TrainConfig, got {'dataset'"),
    (lambda run, tmp: train(TrainConfig(dataset="synthetic"), tmp / "r", keep_every=1.5), TypeError,
     "keep_every must be an int, got 1.5"),
    (lambda run, tmp: TrainConfig(lr="1e-3"), TypeError, "lr must be a number, got '1e-3' (str)"),
    (lambda run, tmp: TrainConfig(epochs=2.5), TypeError, "epochs must be an int, got 2.5 (float)"),
    (lambda run, tmp: TrainConfig(epochs=True), TypeError, "epochs must be an int, got True (bool)"),
    (lambda run, tmp: TrainConfig(batch_size=2.0), TypeError, "batch_size must be an int, got 2.0 (float)"),
    (lambda run, tmp: TrainConfig(seed=1.5), TypeError, "seed must be an int, got 1.5 (float)"),
    (lambda run, tmp: TrainConfig(num_labels=-5), ValueError, "num_labels must be >= 1, got -5"),
    (lambda run, tmp: VAE(10, encoder="enc"), TypeError, "encoder must be a Module or None, got 'enc' (str)"),
    (lambda run, tmp: VAE(10, prefix=123), TypeError, "prefix must be a str, got 123 (int)"),
    (lambda run, tmp: VAE(10, z_dim=10**12), ValueError, "the VAE 10-500-1000000000000 (1,502,000,000,011,010 weights) needs"),
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


@pytest.mark.parametrize("world_size, command", [("1", "pyro-vae train"), ("3", "torchrun --nproc_per_node 3 -m pyro_vae train")])
def test_an_interrupted_run_says_how_to_resume_it(run_dir, monkeypatch, world_size, command):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    assert interrupted_message("train", run_dir) == f"interrupted; resume with {command} --run-dir {run_dir} --resume"


@pytest.mark.parametrize(
    "value, annotation, accepted",
    [
        (3, int, True), (True, int, False), (3.0, int, False), (3, float, True), (True, float, False),
        ("1e-3", float, False), (None, int | None, True), ((1, 2), tuple[int, ...], True),
        ([1, "2"], tuple[int, ...], False), ("ab", Sequence[int], False), ({"a": 1}, dict, True),
    ],
)
def test_the_generic_checker_reads_annotations(value, annotation, accepted):
    if accepted:
        check_value("v", value, annotation)
    else:
        with pytest.raises(ArgumentTypeError, match="^v must be "):
            check_value("v", value, annotation)
