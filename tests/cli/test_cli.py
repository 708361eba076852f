import json

import pytest
import torch

from pyro_vae import cli
from pyro_vae.cli import build_parser, main


@pytest.mark.parametrize("command", ["train", "evaluate", "plot", None])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "usage: pyro-vae" in capsys.readouterr().out


def test_train_evaluate_plot_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--run-dir",
        str(run),
        "-k",
        "20",
        "--no-progress",
        "--device",
        "cpu",
        "--keep-every",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "log p(x) (IS, K=20)" in out
    assert {p.name for p in (run / "figures").iterdir()} == {
        "samples.png",
        "reconstructions.png",
        "latents.png",
        "curves.png",
        "manifold.png",
    }
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    assert (
        main(
            [
                "evaluate",
                str(run),
                "-k",
                "50",
                "--num-test",
                "100",
                "--checkpoint",
                str(run / "checkpoints" / "epoch-0001.pt"),
            ]
        )
        == 0
    )
    report = json.loads((run / "eval-epoch0001-k50-n100.json").read_text())
    assert report["epoch"] == 1 and report["num_test"] == 100 and report["test_log_px"] >= report["test_elbo"]
    # other pass sizes (7 images x 13 samples): other draws of the same estimate (spread ~0.015 nats)
    assert (
        main(
            [
                "evaluate",
                str(run),
                "-k",
                "50",
                "--num-test",
                "100",
                "--batch-size",
                "7",
                "--chunk-size",
                "13",
                "--checkpoint",
                str(run / "checkpoints" / "epoch-0001.pt"),
            ]
        )
        == 0
    )
    again = json.loads((run / "eval-epoch0001-k50-n100.json").read_text())
    assert again["test_log_px"] != report["test_log_px"]
    assert again["test_log_px"] == pytest.approx(report["test_log_px"], abs=0.1)
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", "--no-progress", "-k", "5"]) == 0
    assert json.loads((run / "eval-epoch0003-k5-n500.json").read_text())["epoch"] == 3
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "manifold.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message, status",
    [
        (["evaluate", "{tmp}/nothing"], "no checkpoint at", 1),
        (["train", "--resume"], "--resume needs --run-dir", 2),
        (["train", "--resume", "--run-dir", "{tmp}/nothing"], "nothing to resume in", 1),
        (["train", "--dataset", "synthetic", "--batch-size", "0"], "--batch-size must be at least 1, got 0", 2),
        (["train", "--dataset", "synthetic", "--device", "cuda:7"], "CUDA is not available", 2),
        (["evaluate", "{tmp}/nothing", "--threads", "0"], "--threads must be at least 1, got 0", 2),
        (
            ["train", "--dataset", "synthetic", "--optimizer", "sgd", "--optimizer-option", "mom=0.9"],
            "optimizer 'sgd' does not take the option(s) ['mom']; it takes ['momentum'",
            2,
        ),
        (
            ["train", "--dataset", "synthetic", "--lr-schedule", "step", "--schedule-option", "size=3"],
            "schedule 'step' does not take the option(s) ['size']",
            2,
        ),
        (["evaluate", "pretrained:nothing"], "unknown pretrained model 'nothing'", 2),
    ],
)
def test_errors_are_one_line(argv, message, status, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == status and err.startswith("pyro-vae: error:") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", [["train"], ["evaluate", "RUN"], ["plot", "RUN"], ["variance"], ["reproduce", "fig4"], ["benchmark"]]
)
def test_every_command_takes_threads(command, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(cli.COMMANDS[command[0]], "run", lambda args: None)
    assert main([*command, "--threads", "3"]) == 0 and calls == [3]


def test_optimizer_and_schedule_options_reach_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--z-dim",
                "2",
                "--hidden",
                "16",
                "--epochs",
                "3",
                "--optimizer",
                "adamw",
                "--optimizer-option",
                "betas=(0.8,0.99)",
                "--lr",
                "0.01",
                "--lr-schedule",
                "exponential",
                "--schedule-option",
                "gamma=0.5",
                "--schedule-option",
                "warmup=1",
                "--num-test",
                "50",
                "--num-samples",
                "5",
                "--run-dir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "over 50 test images" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer_options"] == {"betas": [0.8, 0.99]}
    assert config["schedule_options"] == {"gamma": 0.5, "warmup": 1}
    rates = [float(line.split(",")[2]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rates == pytest.approx([0.005, 0.01, 0.005])  # warm-up 1/2, then 0.5^0, 0.5^1


def test_unknown_estimator_rejected_by_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--estimator", "magic"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


@pytest.mark.slow
def test_variance_study_smoke(tmp_path):
    out = tmp_path / "variance"
    assert (
        main(
            [
                "variance",
                "--dataset",
                "synthetic",
                "--hidden",
                "8",
                "--z-dim",
                "2",
                "--epochs",
                "1",
                "--estimators",
                "reparam",
                "score",
                "score-nvil",
                "--draws",
                "4",
                "--adapt-steps",
                "2",
                "--num-particles",
                "1",
                "2",
                "--z-dims",
                "1",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    import csv

    rows = list(csv.DictReader(open(out / "variance.csv")))
    assert {r["experiment"] for r in rows} == {"training", "particles", "latent"}
    assert {r["estimator"] for r in rows} == {"reparam", "score", "score-nvil"}
    assert {r["epoch"] for r in rows if r["experiment"] == "training"} == {"0", "1"}
    assert {r["num_particles"] for r in rows if r["experiment"] == "particles"} == {"1", "2"}
    for name in (
        "elbo_curves.png",
        "variance_training.png",
        "snr_training.png",
        "variance_particles.png",
        "variance_latent.png",
        "summary.md",
        "training.csv",
    ):
        assert (out / name).exists(), name
    assert "| score-nvil |" in (out / "summary.md").read_text()
    at = tmp_path / "at-run"
    assert (
        main(
            [
                "variance",
                "--run-dir",
                str(out / "train-reparam"),
                "--estimators",
                "reparam",
                "stl",
                "--draws",
                "3",
                "--adapt-steps",
                "1",
                "--out",
                str(at),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(at / "variance.csv")))
    assert {(r["estimator"], r["epoch"]) for r in rows} == {("reparam", "1"), ("stl", "1")}
    assert {r["experiment"] for r in rows} == {"training"}  # no particle sweep unless asked
    # with --num-particles, the sweep at the checkpoint: IWAE and DReG with K samples
    assert (
        main(
            [
                "variance",
                "--run-dir",
                str(out / "train-reparam"),
                "--estimators",
                "reparam",
                "iwae",
                "dreg",
                "--draws",
                "3",
                "--num-particles",
                "1",
                "3",
                "--out",
                str(at),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(at / "variance.csv")))
    sweep = {(r["estimator"], r["num_particles"]) for r in rows if r["experiment"] == "particles"}
    assert sweep == {(e, k) for e in ("reparam", "iwae", "dreg") for k in ("1", "3")}
    summary = (at / "summary.md").read_text()
    assert "| estimator | K | guide (phi) SNR |" in summary and "| dreg | 3 |" in summary
    assert (at / "snr_particles.png").is_file() and (at / "variance_particles.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--hidden", "-5"], "--hidden must be at least 1, got -5"),
        (["train", "--hidden", "200", "0"], "--hidden must be at least 1, got 0"),
        (["train", "--z-dim", "0"], "--z-dim must be at least 1, got 0"),
        (["train", "--init-std", "-1"], "--init-std must be a finite number > 0, got -1.0"),
        (["train", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["train", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["train", "--weight-decay", "-1"], "--weight-decay must be a finite number >= 0, got -1.0"),
        (["train", "-k", "0"], "-k/--num-samples must be at least 1, got 0"),
        (["train", "--keep-every", "-1"], "--keep-every must be at least 0, got -1"),
        (["train", "--num-train", "0"], "--num-train must be at least 1, got 0"),
        (["train", "--epochs", "-2"], "--epochs must be at least 1, got -2"),
        (["train", "--device", "gpu"], "--device 'gpu': expected cpu, cuda, cuda:N or auto"),
        (["train", "--device", "meta"], "--device 'meta': expected cpu, cuda, cuda:N or auto"),
        (["train", "--hidden", "1000000000"], "needs at least"),
        (["evaluate", "{tmp}/run", "--num-test", "0"], "--num-test must be at least 1, got 0"),
        (["evaluate", "{tmp}/run", "--num-test", "-1"], "--num-test must be at least 1, got -1"),
        (["evaluate", "{tmp}/run", "--num-samples", "0"], "-k/--num-samples must be at least 1, got 0"),
        (["evaluate", "{tmp}/run", "--chunk-size", "0"], "--chunk-size must be at least 1, got 0"),
        (["evaluate", "{tmp}/run", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["benchmark", "--evaluate", "--chunk-size", "0"], "--chunk-size must be at least 1, got 0"),
        (["evaluate", "{tmp}/run", "--device", "gpu"], "--device 'gpu'"),
        (["benchmark", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["benchmark", "--hidden", "-5"], "--hidden must be at least 1, got -5"),
        (["variance", "--draws", "1"], "--draws must be at least 2, got 1"),
    ],
)
def test_bad_values_are_refused_up_front(argv, message, tmp_path, capsys):
    """Each bad value is one line naming it, before any data are loaded or anything trained:
    the run folder is never created."""
    run = tmp_path / "run"
    if argv[0] == "train":
        argv = [*argv, "--dataset", "synthetic", "--run-dir", str(run), "--no-progress"]
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pyro-vae: error:") and message in err and err.count("\n") == 1, err
    assert not run.exists()


def test_num_test_beyond_the_test_set(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--hidden",
                "8",
                "--z-dim",
                "2",
                "--epochs",
                "1",
                "--run-dir",
                str(run),
                "-k",
                "2",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(run), "--num-test", "501", "-k", "2", "--device", "cpu"]) == 2
    assert "--num-test must be between 1 and the 500 test images, got 501" in capsys.readouterr().err


def test_a_users_estimator_takes_its_options_from_the_command_line(tmp_path, user_module, capsys):
    from pyro_vae.inference import ESTIMATORS
    from pyro_vae.training import load_run

    user_module(
        "my_beta",
        (
            "from pyro.infer import Trace_ELBO\n"
            "from pyro_vae import Estimator, register_estimator\n\n"
            "@register_estimator('test-beta-elbo')\n"
            "def beta_elbo(program, num_particles=1, beta=1.0):\n"
            "    '''a user's beta-ELBO (the name carries beta)'''\n"
            "    return Estimator(f'beta-{beta}', Trace_ELBO(num_particles=num_particles), program.guide)\n"
        ),
    )
    run = tmp_path / "run"
    argv = [
        "--import",
        "my_beta",
        "train",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--estimator",
        "test-beta-elbo",
        "--estimator-option",
        "beta=4.0",
        "-k",
        "5",
        "--run-dir",
        str(run),
        "--no-progress",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert load_run(run).estimator.name == "beta-4.0"
    bad = [
        "--import",
        "my_beta",
        "train",
        "--dataset",
        "synthetic",
        "--estimator",
        "test-beta-elbo",
        "--estimator-option",
        "gamma=1",
        "--run-dir",
        str(tmp_path / "bad"),
    ]
    assert main(bad) == 2
    assert (
        "estimator 'test-beta-elbo' does not take the option(s) ['gamma']; it takes ['beta']" in capsys.readouterr().err
    )
    del ESTIMATORS._entries["test-beta-elbo"]  # a new process that has not imported my_beta
    assert main(["evaluate", str(run), "-k", "2"]) == 1  # the checkpoint cannot be loaded here
    err = capsys.readouterr().err
    assert "a run of the estimator 'test-beta-elbo', which is not registered here" in err and "--import" in err


def test_evaluate_seed_repeats_its_draw_and_other_seeds_give_the_spread(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--z-dim",
                "2",
                "--hidden",
                "16",
                "--epochs",
                "1",
                "--run-dir",
                str(run),
                "-k",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    evaluate = ["evaluate", str(run), "-k", "20", "--num-test", "100"]
    reports = {}
    for seed in (1, 1, 2):
        assert main([*evaluate, "--seed", str(seed)]) == 0
        path = run / f"eval-epoch0001-k20-n100-seed{seed}.json"
        assert f"-> {path}" in capsys.readouterr().out
        reports.setdefault(seed, []).append(json.loads(path.read_text()))
    assert reports[1][0]["seed"] == 1 and reports[1][0]["test_log_px"] == reports[1][1]["test_log_px"]
    assert reports[2][0]["test_log_px"] != reports[1][0]["test_log_px"]
    assert reports[2][0]["test_log_px"] == pytest.approx(reports[1][0]["test_log_px"], abs=0.2)
    assert main(evaluate) == 0  # without a seed: its own file, no seed recorded
    assert "seed" not in json.loads((run / "eval-epoch0001-k20-n100.json").read_text())


def test_a_seeded_evaluation_leaves_the_callers_stream_alone(tmp_path):
    from pyro_vae.training import TrainConfig, load_run, train
    from pyro_vae.training.report import evaluate_run

    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(16,), epochs=1), tmp_path, progress=False)
    run = load_run(tmp_path)
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    evaluate_run(run, 5, num_test=20, seed=7)
    assert torch.equal(torch.rand(2), expected)


def _flushes() -> bool:
    """Whether denormal floats are flushed to zero on the CPU just now."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@pytest.mark.parametrize("flag, flushed", [([], True), (["--flush-denormal"], True), (["--no-flush-denormal"], False)])
def test_commands_flush_denormals_by_default_and_restore_torchs_default(flag, flushed, monkeypatch):
    from pyro_vae.cli.commands import COMMANDS

    seen = []
    monkeypatch.setattr(COMMANDS["evaluate"], "run", lambda args: seen.append(_flushes()))
    assert not _flushes()
    assert main(["evaluate", "somewhere", *flag]) == 0
    assert seen == [flushed] and not _flushes()
