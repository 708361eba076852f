"""One table for every latent structure and training objective, on binarized MNIST.

Each entry of :data:`ENTRIES` is a training setting over Burda et al.'s (2016) single-layer
architecture (784-200-200-50 tanh, Adam 1e-3, M = 100; the ``iwae`` preset): the VAE
trained on the ELBO (Trace_ELBO, one reparameterized sample), on the IWAE bound and with
DReG gradients (k = 50), two stochastic layers (on the ELBO and on the IWAE bound), an IAF
guide, a mixture-of-Gaussians prior and the VampPrior (with KL warm-up, as its paper,
beside the VAE with the same warm-up), the conditional VAE, and M2 on 100-3000 labels (its
own 784-500-50 networks, y summed out by enumeration where unlabelled). Every entry trains
for the same number of epochs, so the rows compare structures at equal training, and
each is evaluated the same way: log p(x) by importance sampling with K samples from the
guide (:func:`~pyro_vae.training.report.evaluate_run`; for the CVAE, log p(x | y)), and
M2's test error of q(y|x). ``paper`` gives the published number each row is set against,
with its (much longer) training.

:func:`run_table` trains (or resumes) ``out/<entry>-seed<s>/`` for each entry and seed,
``jobs`` at a time (:func:`~pyro_vae.experiments.jobs.run_jobs`), and writes ``runs.csv``
and ``table.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pyro_vae.experiments.jobs import run_jobs
from pyro_vae.files import atomic_write_json, atomic_write_text, write_csv
from pyro_vae.plots import write_figures
from pyro_vae.training import train_or_resume
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.report import evaluate_run, read_report, report_path


@dataclass(frozen=True)
class Entry:
    """A row of the table: the :class:`TrainConfig` fields that differ from the ``iwae`` preset."""

    description: str
    changes: dict = field(default_factory=dict)
    paper: str = ""  # the published number to compare with, and where it comes from

    def config(self, budget: dict) -> TrainConfig:
        """The run's config; ``budget`` adds ``epochs``, ``seed`` and optionally ``num_train``."""
        return TrainConfig.from_dict({**PRESETS["iwae"], "dataset": "mnist", **self.changes, **budget})

    def command(self, budget: dict) -> str:
        """The ``pyro-vae train`` command that trains this entry's run."""
        flags = ["--preset iwae"]
        for key, value in {**self.changes, **budget}.items():
            if key == "model_options":
                flags += [f"--model-option {k}={v}" for k, v in value.items()]
            else:
                flags.append(
                    f"--{key.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"
                )
        return "pyro-vae train " + " ".join(flags)


def _m2(labels: int, paper: str) -> Entry:
    return Entry(
        f"M2, {labels} labels",
        paper=paper,
        changes=dict(
            model="m2",
            estimator="enum",
            hidden=(500,),
            z_dim=50,
            num_labels=labels,
            labelled_per_batch=10 if labels < 1000 else 20,
            # the paper's alpha = 0.1 N, with which the table's M2 rows in docs/results.md
            # were trained (M2's default was 0.1 then; it is 2.3 now)
            model_options={"alpha_scale": 0.1},
        ),
    )


#: The rows of the table by name: each a latent structure or training objective and its settings.
ENTRIES: dict[str, Entry] = {
    "vae": Entry("VAE, ELBO", paper="-86.76 (Burda et al. 2016, VAE k=1, 3280 epochs)"),
    "iwae-k50": Entry(
        "VAE, IWAE bound k=50",
        dict(estimator="iwae", num_particles=50),
        "-84.78 (Burda et al. 2016, IWAE k=50, 3280 epochs)",
    ),
    "dreg-k50": Entry(
        "VAE, IWAE bound k=50, DReG gradients",
        dict(estimator="dreg", num_particles=50),
        "IWAE's -84.78; DReG estimates the same bound's gradient (Tucker et al. 2019)",
    ),
    "two-layer": Entry(
        "two stochastic layers 100-50, ELBO",
        dict(model="two-layer", z_dim=100),
        "-85.33 (Burda et al. 2016, VAE k=1, 3280 epochs)",
    ),
    "two-layer-iwae-k50": Entry(
        "two stochastic layers 100-50, IWAE bound k=50",
        dict(model="two-layer", z_dim=100, estimator="iwae", num_particles=50),
        "-82.90 (Burda et al. 2016, IWAE k=50, 3280 epochs)",
    ),
    "iaf": Entry("IAF guide (2 flows), ELBO", dict(model="iaf"), "gain over the VAE row at equal epochs"),
    "mog-prior": Entry(
        "mixture-of-Gaussians prior (10), ELBO",
        dict(model="mog-prior", model_options={"num_components": 10}),
        "gain over the VAE row at equal epochs",
    ),
    "vae-warmup": Entry(
        "VAE, ELBO, KL warm-up over 5 epochs",
        dict(kl_warmup=5),
        "-88.56 (Tomczak & Welling 2018, standard prior, warm-up 100 epochs)",
    ),
    "vampprior": Entry(
        "VampPrior (500 pseudo-inputs), ELBO, KL warm-up over 5 epochs",
        dict(model="vampprior", kl_warmup=5),
        "-85.57 (Tomczak & Welling 2018, warm-up 100 epochs)",
    ),
    "cvae": Entry("CVAE, log p(x|y)", dict(model="cvae"), "no MNIST likelihood in Sohn et al. 2015"),
    "m2-100": _m2(100, "11.97% (+-1.71)"),
    "m2-600": _m2(600, "4.94% (+-0.13)"),
    "m2-1000": _m2(1000, "3.60% (+-0.56)"),
    "m2-3000": _m2(3000, "3.92% (+-0.63)"),
}


def train_entry(
    job: tuple[str, int],
    out: Path,
    budget: dict,
    num_samples: int,
    num_test: int | None,
    data_dir: str | Path | None,
    device: str,
) -> dict:
    """Train (or resume) one entry and seed under ``budget`` (``epochs``, optionally
    ``num_train`` and ``activation``), evaluate it (reusing a saved evaluation of the same
    epoch, K and test images), write its figures into ``figures/`` and return its row."""
    name, seed = job
    entry, budget = ENTRIES[name], {**budget, "seed": seed}
    run_dir = out / f"{name}-seed{seed}"
    run = train_or_resume(entry.config(budget), run_dir, data_dir=data_dir, device=device, progress=False)
    path = report_path(run_dir, run.metrics[-1]["epoch"], num_samples, len(run.dataset.test[:num_test]))
    if path.exists():
        report = read_report(path)
    else:
        report = evaluate_run(run, num_samples, device, num_test)
        atomic_write_json(path, report)
    if not (run_dir / "figures").is_dir():  # samples, reconstructions, latents; M2's analogies
        write_figures(run, run_dir / "figures")
    description = entry.description + (f", {budget['activation']} units" if "activation" in budget else "")
    return {
        "entry": name,
        "seed": seed,
        "description": description,
        **report,
        "command": entry.command(budget),
        "paper": entry.paper,
    }


def _mean_sd(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {scale * statistics.stdev(values):.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    """One line per entry: mean (+- standard deviation over seeds) of each number."""
    lines = [
        "| entry | seeds | epochs | train time / run (min) | test ELBO | test log p(x) | test error (%) | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(r["entry"] for r in rows):
        mine = [r for r in rows if r["entry"] == name]
        first = mine[0]
        error = _mean_sd([r["test_error"] for r in mine], 100) if "test_error" in first else ""
        lines.append(
            f"| {first['description']} | {len(mine)} | {first['epoch']} | "
            f"{_mean_sd([r['train_wall_seconds'] for r in mine], 1 / 60, 1)} | "
            f"{_mean_sd([r['test_elbo'] for r in mine])} | {_mean_sd([r['test_log_px'] for r in mine])} | "
            f"{error} | {first['paper']} |"
        )
    return "\n".join(lines) + "\n"


def run_table(
    out: str | Path,
    entries: Sequence[str] = tuple(ENTRIES),
    seeds: int = 1,
    epochs: int = 10,
    num_samples: int = 5000,
    num_test: int | None = None,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
    num_train: int | None = None,
    activation: str | None = None,
    *,
    progress: bool = False,
) -> list[dict]:
    """Train and evaluate ``entries`` x seeds 0..seeds-1 under ``out`` (on the first
    ``num_train`` training images if given, with ``activation`` hidden units instead of
    the entries' tanh if given), write ``runs.csv`` and ``table.md``, and return the rows
    (one per run); ``progress``: a tqdm bar on stderr over the runs."""
    unknown = [name for name in entries if name not in ENTRIES]
    if unknown:
        raise ValueError(f"unknown entries {unknown}; expected some of {list(ENTRIES)}")
    out = Path(out)
    budget = {
        "epochs": epochs,
        **({"num_train": num_train} if num_train else {}),
        **({"activation": activation} if activation else {}),
    }
    for name in entries:  # every entry's config under the budget, before any run starts (a warm-up beyond it)
        ENTRIES[name].config({**budget, "seed": 0})
    job = partial(
        train_entry,
        out=out,
        budget=budget,
        num_samples=num_samples,
        num_test=num_test,
        data_dir=data_dir,
        device=device,
    )
    rows = run_jobs(job, [(name, seed) for name in entries for seed in range(seeds)], jobs, progress=progress)
    write_csv(rows, out / "runs.csv")
    atomic_write_text(out / "table.md", markdown_table(rows))
    return rows
