"""Learning curves against training samples evaluated (log axis, as the paper's Figs. 2 and 3):
a run's curves, and the panels of the paper's figures (one colour per algorithm)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

from pyro_vae.plots.figure import save_figure

#: The x range of the paper's Figures 2 and 3: 10^5 to 10^8 training samples evaluated.
PAPER_XLIM = (1e5, 1e8)  # the paper's Figures 2 and 3: 10^5 to 10^8 training samples evaluated
#: The legend label of each training algorithm in the paper's figures.
ALGORITHM_LABELS = {"aevb": "AEVB", "wake-sleep": "wake-sleep", "mcem": "MCEM (HMC)"}
#: The colour of each training algorithm in the paper's figures.
ALGORITHM_COLORS = {"aevb": "C0", "wake-sleep": "C1", "mcem": "C2"}


def samples_axis(ax, samples: Sequence[float], xlim: tuple[float, float] | None = None) -> None:
    """A log x axis of training samples that labels only the decades (10^5, 10^6, ...), so tick
    labels never run into each other, over ``xlim`` or the whole decades around ``samples``."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=True))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if xlim is None and samples:
        xlim = (10 ** math.floor(math.log10(min(samples))), 10 ** math.ceil(math.log10(max(samples)) + 1e-9))
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel("training samples evaluated")


def plot_curves(metrics: list[dict], path: str | Path) -> Path:
    """Train and test ELBO per datum against training samples seen (log scale, as paper Fig. 2);
    beside them the test error of a program that classifies, where the rows carry one."""
    scored = [m for m in metrics if m.get("test_error") is not None]
    fig = Figure(figsize=(10 if scored else 5, 3.5))
    ax, *error_ax = fig.subplots(1, 2 if scored else 1, squeeze=False)[0]
    seen = [m["samples_seen"] for m in metrics]
    ax.plot(seen, [m["train_elbo"] for m in metrics], label="train ELBO", marker=".")
    ax.plot(seen, [m["test_elbo"] for m in metrics], label="test ELBO", marker=".")
    samples_axis(ax, seen)
    ax.set_ylabel("ELBO (nats per datum)")
    ax.legend()
    for axis in (ax, *error_ax):
        axis.grid(alpha=0.3)
    if scored:
        error_ax[0].plot(
            [m["samples_seen"] for m in scored], [100 * m["test_error"] for m in scored], marker=".", color="C2"
        )
        samples_axis(error_ax[0], seen)
        error_ax[0].set_ylabel("test error of the classifier (%)")
    return save_figure(fig, path)


def curve_ylim(curves: Sequence[Sequence[float]]) -> tuple[float, float]:
    """From the lowest curve's 10th percentile to the highest value: wake-sleep starts
    thousands of nats below its later values, and those first points would flatten the rest."""
    finite = [sorted(v for v in c if math.isfinite(v)) for c in curves]
    finite = [c for c in finite if c]
    top = max(c[-1] for c in finite)
    low = min(c[int(0.1 * (len(c) - 1))] for c in finite)
    pad = 0.05 * max(top - low, 1.0)
    return low - pad, top + pad


def curve_panel(
    ax, rows: list[dict], series: dict[str, tuple[str, str]], title: str, xlim: tuple[float, float] | None
) -> None:
    """Curves ``metric`` vs samples_seen on a log axis, one colour per algorithm, one style per metric.

    The x axis is :func:`samples_axis` over ``xlim`` (the paper's; rows
    outside it are hidden) or the whole decades around the rows."""
    rows = [r for r in rows if xlim is None or xlim[0] <= r["samples_seen"] <= xlim[1]]
    curves = []
    for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
        mine = sorted((r for r in rows if r["algorithm"] == algorithm), key=lambda r: r["samples_seen"])
        for metric, (label, style) in series.items():
            ys = [r[metric] for r in mine]
            curves.append(ys)
            ax.plot(
                [r["samples_seen"] for r in mine],
                ys,
                style,
                color=ALGORITHM_COLORS[algorithm],
                marker=".",
                markersize=3,
                label=f"{ALGORITHM_LABELS[algorithm]} {label}",
            )
    samples_axis(ax, [r["samples_seen"] for r in rows], xlim)
    if curves:
        ax.set_ylim(*curve_ylim(curves))
    else:  # --partial, before this setting's runs have started
        ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def curve_grid_figure(
    panels: dict[tuple[int, int], tuple[list[dict], str]],
    series,
    ylabel: str,
    path: Path,
    xlim=None,
) -> Path:
    """Panels on a grid with one legend for all of them, below the panels."""
    rows_n = 1 + max(r for r, _ in panels)
    cols_n = 1 + max(c for _, c in panels)
    fig = Figure(figsize=(3.3 * cols_n, 2.9 * rows_n + 0.5), layout="constrained")
    axes = fig.subplots(rows_n, cols_n, squeeze=False)
    for (r, c), (rows, title) in panels.items():
        curve_panel(axes[r][c], rows, series, title, xlim)
        axes[r][0].set_ylabel(ylabel)
    for r in range(rows_n):
        for c in range(cols_n):
            if (r, c) not in panels:
                axes[r][c].axis("off")
    legend: dict[str, Artist] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=min(len(legend), 6), fontsize=8)
    return save_figure(fig, path)
