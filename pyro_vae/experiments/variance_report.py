"""The tables and figures of the estimator study (:mod:`~pyro_vae.experiments.variance_study`):
``summary.md``'s tables, and the variance, SNR, cost and learning-curve figures, from its rows."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from pyro_vae.plots import save_figure


def particles_table(rows: list[dict]) -> str:
    """Markdown table of the ``particles`` rows: the guide's and the model's SNR and the
    guide's tr Cov per estimator and number of particles K."""
    lines = [
        "| estimator | K | guide (phi) SNR | guide tr Cov | model (theta) SNR |",
        "| --- | --- | --- | --- | --- |",
    ]
    selected = {(r["estimator"], r["num_particles"], r["params"]): r for r in rows if r["experiment"] == "particles"}
    for name, k in dict.fromkeys((e, n) for e, n, _ in selected):
        guide, model = selected[name, k, "guide"], selected[name, k, "model"]
        lines.append(f"| {name} | {k} | {guide['snr']:.3g} | {guide['total_variance']:.3g} | {model['snr']:.3g} |")
    return "\n".join(lines) + "\n"


def summary_table(rows: list[dict], epoch: int) -> str:
    """Markdown table of the ``training`` rows at ``epoch``: each estimator's variance, SNR, the
    bias of its guide gradient relative to the reference's (``rel_bias``, a bias only where the
    reference is unbiased) and cost (K, log p(x | z) evaluations per datum, ms per estimate, guide
    tr Cov x seconds)."""
    final = {(r["estimator"], r["params"]): r for r in rows if r["experiment"] == "training" and r["epoch"] == epoch}
    reference = next((r["reference"] for r in final.values()), "reparam")
    lines = [
        f"| estimator (options) | K | guide (phi) tr Cov | ratio to {reference} [95% CI] | guide SNR "
        f"| guide rel. bias to {reference} [95% CI] "
        "| model (theta) ratio [95% CI] | evals / datum | ms / estimate | guide tr Cov x s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(e for e, _ in final):
        enc, dec = final[name, "guide"], final[name, "model"]
        lines.append(
            f"| {name}{_options(enc['options'])} | {enc['num_particles']} | {enc['total_variance']:.3g} "
            f"| {enc['ratio']:.3g} [{enc['ratio_lo']:.3g}, {enc['ratio_hi']:.3g}] | {enc['snr']:.3g} "
            f"| {enc['rel_bias']:.3g} [{enc['rel_bias_lo']:.3g}, {enc['rel_bias_hi']:.3g}] "
            f"| {dec['ratio']:.3g} [{dec['ratio_lo']:.3g}, {dec['ratio_hi']:.3g}] "
            f"| {enc['evaluations_per_datum']:g} | {enc['ms_per_estimate']:.1f} | {enc['variance_x_seconds']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _options(options: dict) -> str:
    """`` (beta=4.0)``: an estimator's options as the table shows them, nothing for none."""
    return " (" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")" if options else ""


def plot_variance(rows: list[dict], experiment: str, x_key: str, path: Path, stat: str = "total_variance") -> Path:
    """One panel each for the guide's and the model's parameters: ``stat`` (log scale) against ``x_key`` per estimator."""
    selected = [r for r in rows if r["experiment"] == experiment]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, group in zip(axes, ("guide", "model")):
        for name in dict.fromkeys(r["estimator"] for r in selected):
            pts = sorted((r[x_key], r[stat]) for r in selected if r["estimator"] == name and r["params"] == group)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_yscale("log")
        ax.set_title(f"{group} parameters")
        ax.set_xlabel(x_key.replace("_", " "))
        ax.set_ylabel({"total_variance": "tr Cov(gradient)", "snr": "||E g|| / sqrt(tr Cov g) (bias-corrected)"}[stat])
        ax.grid(alpha=0.3)
    if x_key in ("num_particles", "z_dim"):  # a log axis labelled at the values measured
        values = sorted({r[x_key] for r in selected})
        axes[0].set_xscale("log")
        axes[0].set_xticks(values, [f"{v:g}" for v in values])
        axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[1].legend(fontsize=8)
    return save_figure(fig, path)


def plot_variance_time(rows: list[dict], epoch: int, path: Path) -> Path:
    """What a user pays for the variance, at ``epoch``'s ``training`` rows: one panel each for the
    guide's and the model's parameters, tr Cov against ms per estimate (both log scale), one point
    per estimator; along the dotted lines tr Cov x seconds is constant (lower-left is better)."""
    selected = [r for r in rows if r["experiment"] == "training" and r["epoch"] == epoch]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, group in zip(axes, ("guide", "model")):
        mine = [r for r in selected if r["params"] == group]
        for r in mine:
            ax.scatter(r["ms_per_estimate"], r["total_variance"])
            ax.annotate(r["estimator"], (r["ms_per_estimate"], r["total_variance"]), fontsize=7)
        ms = torch.tensor([r["ms_per_estimate"] for r in mine])
        products = torch.tensor([r["variance_x_seconds"] for r in mine]) * 1e3
        if len(mine):
            span = 10 ** torch.linspace(ms.min().log10().item() - 0.1, ms.max().log10().item() + 0.1, 2)
            for product in 10 ** products.log10().round().unique():
                ax.plot(span, product / span, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{group} parameters, epoch {epoch}")
        ax.set_xlabel("ms per gradient estimate")
        ax.set_ylabel("tr Cov(gradient)")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_elbo_curves(rows: list[dict], path: Path) -> Path:
    """Test ELBO per estimator against SVI steps, against wall-clock seconds, and against
    ``estimate_seconds`` (the steps at the estimator's measured cost per estimate: equal time
    without the machine's other load)."""
    keys = {
        "steps": "SVI steps",
        "wall_seconds": "wall-clock seconds",
        "estimate_seconds": "steps x measured seconds per estimate",
    }
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, len(keys), sharey=True)
    for name in dict.fromkeys(r["estimator"] for r in rows):
        mine = [r for r in rows if r["estimator"] == name]
        for ax, key in zip(axes, keys):
            ax.plot([r[key] for r in mine], [r["test_elbo"] for r in mine], marker="o", label=name)
    for ax, label in zip(axes, keys.values()):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test ELBO (nats per datum)")
    axes[-1].legend(fontsize=8)
    return save_figure(fig, path)
