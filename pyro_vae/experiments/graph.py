"""Table 1 of Kipf & Welling (2016): link prediction with the (variational) graph autoencoder.

Each run is an ordinary training run (``pyro-vae train --model vgae --dataset cora
--preset kipf``): :func:`pyro_vae.training.train` with a
:class:`~pyro_vae.training.config.TrainConfig` of a graph model, trained by the one training loop
as a ``"graph"`` run (:mod:`pyro_vae.training.kinds`) in a run folder with the same lock, atomic
files and resume rules as every run. The paper's settings are the preset ``kipf``:
GCN 32-16, Adam 0.01, 200 full-graph steps, the reparameterized ELBO.

:func:`run_table` trains every (model, data set, seed) and writes the paper's
Table 1 with mean +- std over seeds; the link split is fixed (``split_seed``),
the seeds vary the initialization and the sampled z, as in the paper.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

from pyro_vae.files import atomic_write_text, write_csv
from pyro_vae.training import PRESETS, GraphRun, TrainConfig, evaluate_graph_run, train_or_resume

# Kipf & Welling (2016), Table 1: test AUC and AP in percent.
PAPER: dict[tuple[str, str], tuple[float, float]] = {
    ("vgae", "cora"): (91.4, 92.6),
    ("vgae", "citeseer"): (90.8, 92.0),
    ("vgae", "pubmed"): (94.4, 94.7),
    ("gae", "cora"): (91.0, 92.0),
    ("gae", "citeseer"): (89.5, 89.9),
    ("gae", "pubmed"): (96.4, 96.5),
}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std (in percent) of test AUC and AP per (model, data set), with the paper's values."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    summary = []
    for (model, dataset), group in groups.items():
        entry = {"model": model, "dataset": dataset, "seeds": len(group)}
        for metric in ("auc", "ap"):
            values = [100 * r[f"test_{metric}"] for r in group]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry["paper_auc"], entry["paper_ap"] = PAPER.get((model, dataset), (math.nan, math.nan))
        entry["wall_seconds_mean"] = statistics.fmean(r["train_wall_seconds"] for r in group)
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table against Kipf & Welling (2016), Table 1."""
    lines = [
        "| model | data set | seeds | test AUC (%) | paper AUC | test AP (%) | paper AP | train time / run (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary:
        lines.append(
            f"| {s['model'].upper()} | {s['dataset']} | {s['seeds']} | {s['auc_mean']:.1f} +- {s['auc_std']:.1f} | "
            f"{s['paper_auc']:.1f} | {s['ap_mean']:.1f} +- {s['ap_std']:.1f} | {s['paper_ap']:.1f} | "
            f"{s['wall_seconds_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run_table(
    out: str | Path,
    *,
    models: list[str] | tuple[str, ...] = ("vgae", "gae"),
    datasets: list[str] | tuple[str, ...] = ("cora", "citeseer"),
    seeds: int = 10,
    base: TrainConfig | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
    split_per_seed: bool = False,
) -> list[dict]:
    """Train ``models`` x ``datasets`` x seeds 0..seeds-1 under ``out/<model>-<dataset>-seed<s>/``
    (finished runs are reused, stopped ones resumed), write ``runs.csv``, ``summary.csv``,
    ``table.md`` and ``embedding-<dataset>.png`` (the first model's seed-0 posterior means), and
    return the summary rows. ``base`` (default: the preset ``kipf`` on Cora) gives every
    setting but the model, data set and seed. Every run uses the link split ``base.split_seed``, or with
    ``split_per_seed`` the split of its own seed (as ``tkipf/gae``, whose ``train.py`` draws
    a new random split each time it runs)."""
    from pyro_vae.plots.embedding import embedding_figure

    out = Path(out)
    base = base or TrainConfig(model="vgae", dataset="cora", **PRESETS["kipf"])
    rows = []
    for dataset in datasets:
        for seed in range(seeds):  # seeds outermost: a stopped table holds every model at the same seeds
            for model in models:
                split_seed = seed if split_per_seed else base.split_seed
                config = dataclasses.replace(base, model=model, dataset=dataset, seed=seed, split_seed=split_seed)
                run_dir = out / f"{model}-{dataset}-seed{seed}"
                run = train_or_resume(config, run_dir, data_dir=data_dir, progress=progress)
                assert isinstance(run, GraphRun)  # a graph model's run (for the type checker)
                report = evaluate_graph_run(run, run_dir)
                rows.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "seed": seed,
                        "split_seed": split_seed,
                        "test_auc": report["auc"],
                        "test_ap": report["ap"],
                        "train_wall_seconds": report["train_wall_seconds"],
                    }
                )
                write_csv(rows, out / "runs.csv")
                if model == models[0] and seed == 0:
                    title = f"{model.upper()} posterior means on {dataset}, colour = class"
                    figure = embedding_figure(run.embed(), run.split.graph.y, title)
                    figure.savefig(out / f"embedding-{dataset}.png", dpi=120)
    summary = summarize(rows)
    write_csv(summary, out / "summary.csv")
    atomic_write_text(out / "table.md", markdown_table(summary))
    return summary
