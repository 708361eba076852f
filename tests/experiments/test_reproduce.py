import csv
import dataclasses
from pathlib import Path

import pytest

from pyro_vae.cli import build_parser
from pyro_vae.cli.reproduce import cmd_reproduce
from pyro_vae.experiments.paper_settings import (
    BUDGETS,
    budget_config,
    get_budget,
    paper_config,
    run_name,
    select_settings,
)
from pyro_vae.experiments.reproduce import fig2, fig3, fig4, fig5, reproduce
from pyro_vae.plots import PAPER_XLIM, curve_grid_figure, curve_panel
from pyro_vae.training.loop import TrainConfig


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.data
def test_fig2_tiny(tmp_path, real_data_dir):
    rows = fig2(tmp_path, "tiny", real_data_dir)
    b = BUDGETS["tiny"]
    expected = {("mnist", z, a) for z in b.mnist_z_dims for a in ("aevb", "wake-sleep")}
    expected |= {("frey", z, a) for z in b.frey_z_dims for a in ("aevb", "wake-sleep")}
    assert {(r["dataset"], r["z_dim"], r["algorithm"]) for r in rows} == expected
    # tiny: one MNIST epoch (one row at its end); Frey 3400 samples = 2 epochs of 1700,
    # rows at 10^3.5 (3162, reached at step 32) and at the end (3400)
    mnist = sorted(r["samples_seen"] for r in rows if r["dataset"] == "mnist" and r["algorithm"] == "aevb")
    frey = sorted(r["samples_seen"] for r in rows if r["dataset"] == "frey" and r["algorithm"] == "aevb")
    assert (mnist, frey) == ([60_000], [3_200, 3_400])
    assert len(_csv(tmp_path / "fig2.csv")) == len(rows)
    assert (tmp_path / "fig2.png").stat().st_size > 0
    mnist_aevb = [r for r in rows if r["dataset"] == "mnist" and r["algorithm"] == "aevb"]
    assert -300 < mnist_aevb[-1]["test_elbo"] < -80  # nats: a sane binarized-MNIST bound after one epoch
    # --z-dims 3: the MNIST runs alone, drawn from the same checkpoints (the Frey row drops out)
    only = reproduce("fig2", tmp_path / "mnist-only", "tiny", real_data_dir, partial=True, z_dims=[3])
    assert only == []  # another folder: nothing trained there
    only = reproduce("fig2", tmp_path, "tiny", real_data_dir, partial=True, z_dims=[3])
    assert only == [r for r in rows if r["dataset"] == "mnist"]
    assert reproduce("fig2", tmp_path, "tiny", real_data_dir, partial=True, datasets=["frey"]) == [
        r for r in rows if r["dataset"] == "frey"
    ]


@pytest.mark.slow
@pytest.mark.data
def test_fig3_tiny_and_resume(tmp_path, real_data_dir):
    rows = fig3(tmp_path, "tiny", real_data_dir)
    b = BUDGETS["tiny"]
    expected = {(n, a) for n in b.fig3_num_train for a in ("aevb", "wake-sleep", "mcem")}
    assert {(r["num_train"], r["algorithm"]) for r in rows} == expected
    # 1000 training images: a row at 10^3 samples, then at the end (3000; 10^3.5 is not reached)
    assert sorted(r["samples_seen"] for r in rows if r["algorithm"] == "aevb") == [1000, 3000]
    assert sorted(r["samples_seen"] for r in rows if r["algorithm"] == "mcem") == [1000, 2000]
    for r in rows:
        assert r["test_log_px"] < 0 and r["train_log_px"] < 0 and (r["num_samples"], r["num_points"]) == (5, 100)
    assert (tmp_path / "fig3.png").stat().st_size > 0
    table = (tmp_path / "fig3.md").read_text().splitlines()
    assert table[0] == "| num_train | algorithm | training samples | train_log_px | test_log_px | wall time (min) |"
    last = max((r for r in rows if r["algorithm"] == "mcem"), key=lambda r: r["samples_seen"])
    assert table[4].startswith(f"| 1000 | mcem | 2.00e+03 | {last['train_log_px']:.2f} | {last['test_log_px']:.2f} |")
    checkpoints = sorted(tmp_path.glob("runs/*/checkpoint.pt"))
    assert len(checkpoints) == len(expected) and all("-n1000-" in p.parent.name for p in checkpoints)
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    assert fig3(tmp_path, "tiny", real_data_dir) == rows  # a second call reuses runs and estimates
    assert reproduce("fig3", tmp_path, "tiny", real_data_dir, partial=True) == rows
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    # the same runs trained two at a time in worker processes (log p(x) columns included) give the same numbers
    timing = {"wall_seconds", "train_seconds"}
    parallel = fig3(tmp_path / "jobs2", "tiny", real_data_dir, jobs=2)
    assert [{k: v for k, v in r.items() if k not in timing} for r in parallel] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows
    ]
    # --partial trains nothing: on an empty folder it draws empty panels
    assert fig3(tmp_path / "empty", "tiny", real_data_dir, partial=True) == []
    assert (tmp_path / "empty" / "fig3.png").is_file() and not (tmp_path / "empty" / "runs").exists()
    with pytest.raises(ValueError, match="--partial draws the learning curves"):
        reproduce("fig4", tmp_path, "tiny", real_data_dir, partial=True)


@pytest.mark.slow
@pytest.mark.data
def test_fig4_tiny(tmp_path, real_data_dir):
    rows = fig4(tmp_path, "tiny", real_data_dir)
    assert [r["dataset"] for r in rows] == ["mnist", "frey"]
    for name in ("fig4-mnist.png", "fig4-frey.png", "fig4.csv"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.data
def test_fig5_tiny(tmp_path, real_data_dir):
    rows = fig5(tmp_path, "tiny", real_data_dir)
    assert [r["z_dim"] for r in rows] == list(BUDGETS["tiny"].sample_z_dims)
    for row in rows:
        assert (tmp_path / row["figure"]).stat().st_size > 0


def test_paper_config_and_run_names():
    aevb = paper_config("mnist", 3, 500, 2)
    assert type(aevb) is TrainConfig
    assert (aevb.optimizer, aevb.lr, aevb.init_std, aevb.weight_decay, aevb.batch_size) == (
        "adagrad",
        0.02,
        0.01,
        1.0,
        100,
    )
    ws = paper_config("mnist", 3, 500, 2, "wake-sleep")
    assert type(ws) is TrainConfig and ws.algorithm == "wake-sleep"
    subset = paper_config("mnist", 3, 100, 2, num_train=1000)
    assert subset.num_train == 1000 and subset.algorithm == "aevb"
    assert paper_config("frey", 2, 200, 2).lr == 0.01
    names = {run_name(c) for c in (aevb, ws, subset)}
    assert len(names) == 3 and run_name(aevb).startswith("mnist-aevb-z3-h500-")
    assert run_name(paper_config("mnist", 3, 500, 7)) == run_name(aevb)  # epochs do not name a run
    assert run_name(dataclasses.replace(aevb, lr_schedule="iwae")) != run_name(aevb)
    # names made before eval_samples was renamed metrics_num_samples (pyro_vae.training.config.RENAMED_KEYS)
    assert run_name(aevb) == "mnist-aevb-z3-h500-87f76ca7"
    assert run_name(dataclasses.replace(aevb, metrics_num_samples=10)) == "mnist-aevb-z3-h500-9241f0b9"


def test_bad_names_are_reported(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown budget 'huge'; expected one of \['full', 'medium', 'small', 'tiny'\]"
    ):
        get_budget("huge")
    with pytest.raises(ValueError, match="unknown figure 'fig9'"):
        reproduce("fig9", tmp_path)


def test_select_settings_keeps_the_same_runs():
    medium = BUDGETS["medium"]
    cut = select_settings(medium, [10, 200])
    assert (cut.mnist_z_dims, cut.frey_z_dims) == ((10, 200), (10,))
    assert dataclasses.replace(cut, mnist_z_dims=medium.mnist_z_dims, frey_z_dims=medium.frey_z_dims) == medium
    assert select_settings(medium, [200]).frey_z_dims == ()
    mnist = select_settings(medium, [10, 20, 200], ["mnist"])
    assert (mnist.mnist_z_dims, mnist.frey_z_dims) == ((10, 20, 200), ())
    assert select_settings(medium, datasets=["frey"]).frey_z_dims == medium.frey_z_dims
    assert select_settings(medium) == medium
    with pytest.raises(
        ValueError, match=r"--z-dims 7 200: this budget's fig2 latent sizes are \[2, 3, 5, 10, 20, 200\]"
    ):
        select_settings(medium, [7, 200])
    with pytest.raises(ValueError, match=r"--datasets cifar: fig2's data sets are \['mnist', 'frey'\]"):
        select_settings(medium, datasets=["cifar"])
    with pytest.raises(ValueError, match="--z-dims and --datasets select fig2's settings; fig3 has no choice of them"):
        reproduce("fig3", "unused", "medium", z_dims=[3])


def test_reproduce_subcommand_parses():
    parser = build_parser()
    args = parser.parse_args(["reproduce", "fig3", "--budget", "full", "--out", "x", "--device", "cpu"])
    assert (args.figure, args.budget, args.out, args.device, args.func) == (
        "fig3",
        "full",
        Path("x"),
        "cpu",
        cmd_reproduce,
    )
    assert parser.parse_args(["reproduce", "fig2"]).out == Path("runs/reproduce")
    assert parser.parse_args(["reproduce", "fig2", "--budget", "medium", "--partial"]).partial
    assert not parser.parse_args(["reproduce", "fig2"]).partial
    assert parser.parse_args(["reproduce", "fig2", "--jobs", "2"]).jobs == 2
    assert parser.parse_args(["reproduce", "fig2"]).jobs == 1
    assert parser.parse_args(["reproduce", "fig2", "--z-dims", "10", "200"]).z_dims == [10, 200]
    assert parser.parse_args(["reproduce", "fig2"]).z_dims is None
    assert parser.parse_args(["reproduce", "fig2", "--datasets", "mnist"]).datasets == ["mnist"]
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "fig7"])


def test_budgets_count_training_samples(tmp_path):
    medium = BUDGETS["medium"]
    assert medium.mnist_samples == medium.frey_samples == medium.fig3_samples == 10**7
    assert medium.mnist_z_dims == (3, 5, 10, 20, 200) and medium.frey_z_dims == (2, 5, 10, 20)
    assert medium.evals_per_decade >= 10 and medium.paper_axes
    config = budget_config(medium, "mnist", 3, 100, 10**7, None, "wake-sleep", num_train=50_000)
    assert (config.epochs, config.evals_per_decade, config.algorithm) == (200, 10, "wake-sleep")
    assert budget_config(medium, "mnist", 3, 100, 10**7, None, num_train=1000).epochs == 10**4


def _overlapping_tick_labels(labels, renderer) -> list[tuple[str, str]]:
    shown = [t for t in labels if t.get_visible() and t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in shown]
    return [
        (shown[i].get_text(), shown[j].get_text())
        for i in range(len(shown))
        for j in range(i + 1, len(shown))
        if boxes[i].overlaps(boxes[j])
    ]


@pytest.mark.parametrize("xlim, num_points", [(None, 38), (PAPER_XLIM, 38), (None, 15), (None, 3)])
def test_learning_curve_figure_is_readable(tmp_path, xlim, num_points):
    # rows like Frey Face's: 10 per decade from 2e3 on; up to 5e4 (15 points) is the small
    # budget's range, where minor tick labels ("2x10^3 6x10^3 10^4 2x10^4") ran into each other
    samples = [int(10 ** (3.3 + j / 10)) for j in range(num_points)]
    rows = [
        {"algorithm": a, "samples_seen": s, "train_elbo": 600 + 10 * i + k, "test_elbo": 590 + 10 * i + k}
        for k, a in enumerate(("aevb", "wake-sleep"))
        for i, s in enumerate(samples)
    ]
    panels = {(0, c): (rows, f"panel {c}") for c in range(3)} | {(1, 0): (rows, "lower")}
    path = curve_grid_figure(
        panels, {"train_elbo": ("train", "-"), "test_elbo": ("test", "--")}, "ELBO", tmp_path / "f.png", xlim
    )
    assert path.stat().st_size > 0
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False)
    curve_panel(axes[0][0], rows, {"train_elbo": ("train", "-"), "test_elbo": ("test", "--")}, "t", xlim)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = axes[0][0]
    labels = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()]
    assert len(labels) >= 2  # the decades are labelled ...
    assert all("10^" in t or "10^{" in t for t in labels)  # ... and only the decades
    assert _overlapping_tick_labels(ax.get_xticklabels(which="both"), renderer) == []
    assert _overlapping_tick_labels(ax.get_yticklabels(which="both"), renderer) == []
    low, high = ax.get_xlim()
    assert (low, high) == pytest.approx(xlim) if xlim else low <= samples[0] and samples[-1] <= high
    handles, names = axes[0][0].get_legend_handles_labels()
    assert names == ["AEVB train", "AEVB test", "wake-sleep train", "wake-sleep test"]
