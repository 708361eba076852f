"""The stacked M1 + M2 (``m1-m2``) as a run: its M1 named by ``--model-option m1=...`` (a run
folder or ``pretrained:NAME``), trained, resumed and evaluated through the library, and the
clear errors for an M1 that cannot be loaded or does not fit."""

import dataclasses
import json

import pytest
import torch
from support import SMALL

from pyro_vae import pretrained
from pyro_vae.cli import main
from pyro_vae.data import DATASETS, make_synthetic
from pyro_vae.registry import Registry
from pyro_vae.training import TrainConfig, build_run, load_program, load_run, train
from pyro_vae.training.build import with_absolute_sources

STACKED = dict(SMALL, model="m1-m2", estimator="enum", num_labels=40, labelled_per_batch=10)


@pytest.fixture(scope="module")
def m1_dir(tmp_path_factory):
    """A VAE M1 of the synthetic images (z dim 2), one epoch."""
    run_dir = tmp_path_factory.mktemp("m1")
    torch.manual_seed(0)
    train(TrainConfig(**SMALL, epochs=1), run_dir, progress=False)
    return run_dir


def test_m1_from_a_run_folder_trains_resumes_and_evaluates_through_the_cli(tmp_path, m1_dir, capsys):
    run_dir = tmp_path / "stacked"
    args = [
        "train",
        "--model",
        "m1-m2",
        "--model-option",
        f"m1={m1_dir}",
        "--estimator",
        "enum",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "16",
        "--lr",
        "1e-2",
        "--num-labels",
        "40",
        "--labelled-per-batch",
        "10",
        "--run-dir",
        str(run_dir),
        "-k",
        "5",
        "--no-progress",
    ]
    assert main([*args, "--epochs", "1"]) == 0, capsys.readouterr().err
    assert main([*args, "--epochs", "2", "--resume"]) == 0, capsys.readouterr().err
    assert (run_dir / "figures" / "analogies.png").is_file()
    assert main(["evaluate", str(run_dir), "-k", "5", "--num-test", "200"]) == 0
    out = capsys.readouterr().out
    assert "test error" in out and "log p(x, y) (IS, K=5)" in out
    report = json.loads((run_dir / "eval-epoch0002-k5-n200.json").read_text())
    assert report["test_elbo"] <= report["test_log_px"] < 0 and 0.0 <= report["test_error"] < 1.0
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "test_error" in header
    run = load_run(run_dir)
    assert [row["epoch"] for row in run.metrics] == [1, 2]
    assert all(0.0 <= row["test_error"] <= 1.0 for row in run.metrics)
    m1 = load_run(m1_dir).program.state_dict()
    for name, value in m1.items():  # the frozen M1 is the one the option names, in every checkpoint
        assert torch.equal(run.program.state_dict()[f"m1.{name}"], value), name


def test_resume_is_the_uninterrupted_run(tmp_path, m1_dir):
    config = TrainConfig(**STACKED, model_options={"m1": str(m1_dir)}, epochs=2)
    straight = train(config, tmp_path / "a", progress=False)
    train(dataclasses.replace(config, epochs=1), tmp_path / "b", progress=False)
    resumed = train(config, tmp_path / "b", resume=True, progress=False)
    for (name, p), q in zip(straight.program.state_dict().items(), resumed.program.state_dict().values()):
        assert torch.equal(p, q), name
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(straight.metrics) == strip(resumed.metrics)


def test_m1_from_a_pretrained_entry(tmp_path, m1_dir, monkeypatch):
    monkeypatch.setattr(pretrained, "PRETRAINED", Registry("pretrained model"))
    pretrained.register_pretrained(pretrained.export_pretrained(m1_dir, "toy", "", "a toy M1", folder=tmp_path))
    run = build_run(TrainConfig(**STACKED, model_options={"m1": "pretrained:toy"}, epochs=1))
    for name, value in load_run(m1_dir).program.state_dict().items():
        assert torch.equal(run.program.m1.state_dict()[name], value), name
    assert not any(p.requires_grad for p in run.program.m1.parameters())


def test_loading_m1_leaves_torch_rng_alone(m1_dir):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_program(str(m1_dir))  # building its run seeds torch with the M1 run's seed, inside a fork
    assert torch.equal(torch.rand(3), expected)


def _narrow_synthetic(root):
    """The synthetic set cut to its first 32 pixels: images of another shape."""
    data = make_synthetic()
    return dataclasses.replace(
        data, name="narrow", train=data.train[:, :32], test=data.test[:, :32], image_shape=(1, 4, 8)
    )


@pytest.mark.parametrize(
    "m1, message",
    [
        ("pretrained:nope", r"model option m1=pretrained:nope: unknown pretrained model 'nope'; expected one of \["),
        ("no/such/run", r"model option m1=no/such/run: no/such/run is no run folder with a checkpoint"),
    ],
)
def test_an_m1_that_cannot_be_loaded_is_named(m1, message):
    with pytest.raises(ValueError, match=message):
        build_run(TrainConfig(**STACKED, model_options={"m1": m1}))


def test_an_m1_of_other_images_is_refused(m1_dir, monkeypatch):
    monkeypatch.setitem(DATASETS._entries, "narrow", _narrow_synthetic)
    config = TrainConfig(**dict(STACKED, dataset="narrow"), model_options={"m1": str(m1_dir)})
    with pytest.raises(ValueError, match=r"M1 models images of shape \(64,\), the data are of shape \(32,\)"):
        build_run(config)


def test_a_config_without_m1_is_refused_before_any_work(capsys):
    with pytest.raises(ValueError, match="name it with --model-option m1=pretrained:NAME"):
        TrainConfig(**STACKED)
    assert main(["train", "--model", "m1-m2", "--dataset", "synthetic", "--num-labels", "40"]) == 2
    assert "--model-option m1=pretrained:NAME" in capsys.readouterr().err


def test_m1_run_folder_typed_relative_is_saved_absolute_and_resumes_from_elsewhere(
    tmp_path, m1_dir, monkeypatch, capsys
):
    monkeypatch.chdir(m1_dir.parent)
    run_dir = tmp_path / "stacked"
    args = [
        "train",
        "--model",
        "m1-m2",
        "--model-option",
        f"m1={m1_dir.name}",
        "--estimator",
        "enum",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "16",
        "--num-labels",
        "40",
        "--labelled-per-batch",
        "10",
        "--run-dir",
        str(run_dir),
        "-k",
        "2",
        "--num-test",
        "20",
        "--no-progress",
    ]
    assert main([*args, "--epochs", "1"]) == 0, capsys.readouterr().err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model_options"]["m1"] == str(m1_dir.resolve())
    monkeypatch.chdir(tmp_path)  # where the relative name means nothing
    resume = [
        "train",
        "--resume",
        "--run-dir",
        str(run_dir),
        "--epochs",
        "2",
        "-k",
        "2",
        "--num-test",
        "20",
        "--no-progress",
    ]
    assert main(resume) == 0, capsys.readouterr().err
    assert [row["epoch"] for row in load_run(run_dir).metrics] == [1, 2]


@pytest.mark.parametrize("source", ["pretrained:toy", "/an/absolute/run"])
def test_only_relative_run_folders_are_made_absolute(source):
    config = TrainConfig(**STACKED, model_options={"m1": source, "alpha_scale": 0.1})
    assert with_absolute_sources(config) == config
