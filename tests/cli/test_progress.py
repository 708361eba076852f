"""The long commands draw a progress bar on stderr when it is a terminal, none on a pipe or
with ``--no-progress``, and end with lines saying what they wrote where."""

import argparse
import io
import sys

import pytest

from pyro_vae.cli import main
from pyro_vae.cli.args import show_progress
from pyro_vae.training import TrainConfig, train


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a pseudo-terminal's does."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny trained run (synthetic data, 2-D code) beside a folder for each command's results,
    shared by the module's tests: a command run again reuses what it wrote."""
    root = tmp_path_factory.mktemp("progress")
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), root / "run", progress=False)
    (root / "structures" / "vae-seed0" / "figures").mkdir(parents=True)  # drawn already: no t-SNE of 2000 codes
    return root


# name: (argv, the bar's description, the folder the closing line names); {run}: the tiny run
COMMANDS = {
    "plot": (["plot", "{run}", "--out", "{root}/plot"], "figure", "{root}/plot"),
    "probe": (
        ["probe", "{run}", "--num-labels", "20", "--draws", "1", "--classifiers", "knn", "--out", "{root}/probe"],
        "probe: ",
        "{root}/probe",
    ),
    "variance": (
        ["variance", "--run-dir", "{run}", "--draws", "2", "--adapt-steps", "1", "--estimators", "reparam", "stl"]
        + ["--out", "{root}/variance"],
        "variance: compare",
        "{root}/variance",
    ),
    "reproduce": (
        ["reproduce", "fig2", "--partial", "--budget", "tiny", "--out", "{root}/reproduce"],
        "runs",
        "{root}/reproduce",
    ),
    "structures": (
        ["structures", "vae", "--epochs", "1", "--num-train", "100", "--num-test", "20", "-k", "2"]
        + ["--out", "{root}/structures", "--data-dir", "{mnist}"],
        "runs",
        "{root}/structures",
    ),
    "evaluate": (["evaluate", "{run}", "-k", "2", "--num-test", "20"], "evaluate, K=2", "{run}"),
}


def _run(name: str, folders, request, capsys, *extra: str) -> tuple[str, str]:
    """Run command ``name``; its stdout and stderr."""
    argv, _, folder = COMMANDS[name]
    mnist = request.getfixturevalue("real_data_dir") if "{mnist}" in argv else None
    argv = [a.format(run=folders / "run", root=folders, mnist=mnist) for a in argv]
    assert main([*argv, "--device", "cpu", *extra]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    return out, sys.stderr.getvalue() if isinstance(sys.stderr, Terminal) else err


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_bar_on_a_terminal_and_none_on_a_pipe(name, folders, request, capsys, monkeypatch):
    _, description, folder = COMMANDS[name]
    _, piped = _run(name, folders, request, capsys)  # stderr is a pipe under capsys
    assert "\r" not in piped and "%|" not in piped, piped

    monkeypatch.setattr(sys, "stderr", Terminal())
    out, drawn = _run(name, folders, request, capsys)
    assert description in drawn and "\r" in drawn and "%|" in drawn, drawn
    last = out.strip().splitlines()[-1]  # the closing line says what was written where
    assert (last.startswith("wrote ") or " -> " in last) and folder.format(run=folders / "run", root=folders) in last


@pytest.mark.slow
@pytest.mark.parametrize("name", ["variance", "reproduce"])
def test_no_progress_draws_no_bar_on_a_terminal(name, folders, request, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    _, quiet = _run(name, folders, request, capsys, "--no-progress")
    assert quiet == ""


@pytest.mark.parametrize("flag, terminal, shown", [(True, True, True), (True, False, False), (False, True, False)])
def test_a_bar_needs_a_terminal_and_no_no_progress(flag, terminal, shown, monkeypatch):
    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    monkeypatch.setattr(sys, "stderr", Stderr())
    assert show_progress(argparse.Namespace(progress=flag)) is shown


@pytest.mark.parametrize("progress", [False, True])
def test_the_evaluation_draws_a_bar_over_its_batches_when_asked(progress, folders, monkeypatch):
    from pyro_vae.inference.evaluate import evaluate
    from pyro_vae.training import load_run

    run = load_run(folders / "run")
    monkeypatch.setattr(sys, "stderr", Terminal())
    evaluate(run.program, run.dataset.test_batches(50, num=200), num_samples=2, progress=progress)
    assert ("evaluate, K=2" in sys.stderr.getvalue() and "/4 [" in sys.stderr.getvalue()) is progress


@pytest.mark.parametrize("terminal", [True, False])
def test_training_draws_its_bar_on_a_terminal_and_its_row_lines_anywhere(terminal, tmp_path, monkeypatch, capsys):
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1, num_train=200), tmp_path, progress=True)
    assert ("%|" in stderr.getvalue()) == terminal  # a log (a pipe) gets no bar
    assert "epoch 1, 200 samples: train ELBO" in capsys.readouterr().out
