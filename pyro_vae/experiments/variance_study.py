"""The estimator study: gradient variance across training, particles and latent size,
and training curves for every estimator. Driven by ``pyro-vae variance``.

Steps, all written under ``out_dir``:

1. Train one VAE per estimator for the same number of epochs
   (``train-<estimator>/``, resumable); ``training.csv`` and ``elbo_curves.png``
   give the test ELBO against steps and against wall-clock time.
2. At the ``reparam`` run's initialization, after its first epoch and at its
   last epoch, compare all estimators on one fixed test minibatch
   (``experiment = training`` rows of ``variance.csv``; ``variance_training.png``,
   ``snr_training.png``).
3. At the last epoch, repeat with L = each of ``num_particles`` samples per datum
   (``experiment = particles``; ``variance_particles.png``).
4. For each latent size in ``z_dims``, train a ``reparam`` VAE for one epoch and
   compare there (``experiment = latent``; ``variance_latent.png``).

``summary.md`` holds the table at the last epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from tqdm import tqdm

from pyro_vae.files import write_csv
from pyro_vae.inference.estimators import ESTIMATORS
from pyro_vae.inference.variance import compare_estimators, refusal
from pyro_vae.plots import save_figure
from pyro_vae.training import TrainConfig, build_run, load_run, train_or_resume
from pyro_vae.training.kinds import run_kind
from pyro_vae.validation import check_distinct, check_fields


@dataclasses.dataclass
class StudyConfig:
    """Budget of the study; ``base`` fixes the data set and architecture."""

    base: TrainConfig
    estimators: Sequence[str] | None = None  # None: every registered estimator that applies to the program
    num_draws: int = 100
    adapt_steps: int = 300
    num_particles: Sequence[int] = (1, 4, 16)  # the sample counts L per datum of step 3
    z_dims: Sequence[int] = (2, 5, 10, 20, 50)
    reference: str | None = None  # None: reparam; at a trained run (compare_at_run), the run's own estimator
    estimator_options: dict[str, dict] = dataclasses.field(default_factory=dict)  # estimator -> its options

    def __post_init__(self) -> None:
        if self.estimators is not None:
            self.estimators = [ESTIMATORS.check(name) for name in self.estimators]
            check_distinct("estimators", self.estimators, "each estimator is one row of the study")
        if self.reference is not None:
            ESTIMATORS.check(self.reference)
        check_fields(self)
        if self.num_draws < 2:
            raise ValueError(f"num_draws must be >= 2 (a variance needs two draws), got {self.num_draws}")


def _compare(run, study: StudyConfig, num_particles: int, generator: torch.Generator) -> list[dict]:
    data, bs = run.dataset, study.base.batch_size
    device = next(run.vae.parameters()).device
    x = data.test[:bs].to(device)
    adapt = [b for _, b in zip(range(study.adapt_steps), _cycle(data, bs, generator, device))]
    return compare_estimators(
        run.vae,
        x,
        study.estimators,
        study.num_draws,
        num_particles,
        adapt,
        study.reference,
        generator,
        study.estimator_options,
    )


def _cycle(data, batch_size, generator, device):
    while True:
        yield from data.train_batches(batch_size, generator, device)


def applicable_estimators(run, study: StudyConfig, num_particles: int) -> list[str]:
    """The registered estimators that can estimate the gradient of ``run``'s program with
    ``num_particles`` particles (:func:`~pyro_vae.inference.variance.refusal`), on its first test batch."""
    x = run.dataset.test[: study.base.batch_size].to(next(run.vae.parameters()).device)
    return [
        name
        for name in ESTIMATORS
        if refusal(run.vae, name, x, num_particles, study.estimator_options.get(name)) is None
    ]


def run_study(
    study: StudyConfig, out_dir: str | Path, data_dir=None, device: str = "cpu", *, progress: bool = False
) -> list[dict]:
    """Run every step of the study (see the module docstring); return the variance rows. With
    ``progress``, a tqdm bar on stderr counts the trainings and comparisons, naming the one running."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = study.base
    generator = torch.Generator().manual_seed(base.seed)

    # 1. training curves of every estimator (by default every one that applies to the program)
    start = build_run(dataclasses.replace(base, estimator="reparam"), data_dir, device)
    names = study.estimators or applicable_estimators(start, study, base.num_particles)
    if "reparam" not in names or (study.reference or "reparam") != "reparam":
        raise ValueError(
            "the full study measures every estimator at points of a reparam run against reparam, which this "
            f"program or study leaves out (estimators {names}, reference {study.reference!r}); train the "
            "program with its own estimator and compare there: pyro-vae variance --run-dir RUN [--reference NAME]"
        )
    study = dataclasses.replace(study, estimators=names)
    epochs = sorted({1, base.epochs})
    steps = len(names) + 1 + len(epochs) + len(study.num_particles) + len(study.z_dims)
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    runs = {}
    for name in names:
        bar.set_description(f"variance: train {name}")
        config = dataclasses.replace(base, estimator=name, estimator_options=study.estimator_options.get(name, {}))
        runs[name] = train_or_resume(
            config,
            out_dir / f"train-{name}",
            data_dir=data_dir,
            device=device,
            progress=False,
            keep_every=1 if name == "reparam" else 0,
        )
        bar.update()
    training_rows = [{"estimator": n, **m} for n, r in runs.items() for m in r.metrics]
    for row in training_rows:
        row["steps"] = row["samples_seen"] // base.batch_size
    write_csv(training_rows, out_dir / "training.csv")
    plot_elbo_curves(training_rows, out_dir / "elbo_curves.png")

    # 2. variance at points of the reparam run
    reference_dir = out_dir / "train-reparam"
    points = {0: start}
    for epoch in epochs:
        points[epoch] = load_run(
            reference_dir, data_dir, device, checkpoint=reference_dir / "checkpoints" / f"epoch-{epoch:04d}.pt"
        )
    rows = []
    for epoch, run in points.items():
        bar.set_description(f"variance: compare at epoch {epoch}")
        for row in _compare(run, study, 1, generator):
            rows.append({"experiment": "training", "epoch": epoch, "z_dim": base.z_dim, **row})
        bar.update()

    # 3. number of particles, at the last epoch
    for particles in study.num_particles:
        bar.set_description(f"variance: compare with {particles} particles")
        for row in _compare(points[base.epochs], study, particles, generator):
            rows.append({"experiment": "particles", "epoch": base.epochs, "z_dim": base.z_dim, **row})
        bar.update()

    # 4. latent size, after one epoch of training each
    for z_dim in study.z_dims:
        bar.set_description(f"variance: train and compare z_dim={z_dim}")
        config = dataclasses.replace(base, estimator="reparam", z_dim=z_dim, epochs=1)
        run = train_or_resume(config, out_dir / f"latent-z{z_dim}", data_dir=data_dir, device=device, progress=False)
        for row in _compare(run, study, 1, generator):
            rows.append({"experiment": "latent", "epoch": 1, "z_dim": z_dim, **row})
        bar.update()
    bar.close()

    write_csv(rows, out_dir / "variance.csv")
    plot_variance(rows, "training", "epoch", out_dir / "variance_training.png")
    plot_variance(rows, "training", "epoch", out_dir / "snr_training.png", stat="snr")
    plot_variance(rows, "particles", "num_particles", out_dir / "variance_particles.png")
    plot_variance(rows, "latent", "z_dim", out_dir / "variance_latent.png")
    (out_dir / "summary.md").write_text(summary_table(rows, base.epochs))
    return rows


def compare_at_run(
    run_dir: str | Path,
    study: StudyConfig,
    out_dir: str | Path,
    data_dir=None,
    device: str = "cpu",
    num_particles: Sequence[int] = (),
    *,
    progress: bool = False,
    data: object = None,
) -> list[dict]:
    """Step 2 alone, at the last checkpoint of an existing run (e.g. a long, converged one), as it
    was trained: with its number of particles, its estimator's options, and that estimator as the
    reference unless ``study.reference`` names another; writes ``variance.csv`` and ``summary.md``
    (which says the reference and each estimator's options) into ``out_dir``. With ``num_particles``, also
    step 3 at that checkpoint: every estimator with K particles for each K given (for
    ``iwae`` and ``dreg`` the K-sample bound; Rainforth et al. 2018 show the guide's SNR
    of the IWAE gradient falling as K grows, and DReG's not), drawn in
    ``variance_particles.png`` and ``snr_particles.png`` and tabulated in ``summary.md``.
    ``progress``: a tqdm bar on stderr over the comparisons."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = load_run(run_dir, data_dir, device, data=data)  # data: a run trained on the user's own data
    config = run.config
    run_kind(config).refuse("variance")
    study = dataclasses.replace(
        study,
        base=dataclasses.replace(study.base, batch_size=config.batch_size),
        reference=study.reference or config.estimator,
        estimator_options={config.estimator: config.estimator_options, **study.estimator_options},
    )
    epoch = run.metrics[-1]["epoch"]
    generator = torch.Generator().manual_seed(config.seed)
    rows = []
    comparisons = [("training", config.num_particles), *(("particles", particles) for particles in num_particles)]
    for experiment, particles in tqdm(comparisons, desc="variance: compare", disable=not progress, leave=False):
        rows += [
            {"experiment": experiment, "epoch": epoch, "z_dim": config.z_dim, **row}
            for row in _compare(run, study, particles, generator)
        ]
    write_csv(rows, out_dir / "variance.csv")
    summary = summary_table(rows, epoch)
    if num_particles:
        plot_variance(rows, "particles", "num_particles", out_dir / "variance_particles.png")
        plot_variance(rows, "particles", "num_particles", out_dir / "snr_particles.png", stat="snr")
        summary += "\n" + particles_table(rows)
    (out_dir / "summary.md").write_text(summary)
    return rows


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
    """Markdown table of the ``training`` rows at ``epoch``."""
    final = {(r["estimator"], r["params"]): r for r in rows if r["experiment"] == "training" and r["epoch"] == epoch}
    reference = next((r["reference"] for r in final.values()), "reparam")
    lines = [
        f"| estimator (options) | guide (phi) tr Cov | ratio to {reference} [95% CI] | guide SNR "
        "| model (theta) ratio [95% CI] | ms / estimate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(e for e, _ in final):
        enc, dec = final[name, "guide"], final[name, "model"]
        lines.append(
            f"| {name}{_options(enc['options'])} | {enc['total_variance']:.3g} | {enc['ratio']:.3g} [{enc['ratio_lo']:.3g}, {enc['ratio_hi']:.3g}] "
            f"| {enc['snr']:.3g} | {dec['ratio']:.3g} [{dec['ratio_lo']:.3g}, {dec['ratio_hi']:.3g}] "
            f"| {enc['ms_per_estimate']:.1f} |"
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


def plot_elbo_curves(rows: list[dict], path: Path) -> Path:
    """Test ELBO against SVI steps and against wall-clock seconds, per estimator."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for name in dict.fromkeys(r["estimator"] for r in rows):
        mine = [r for r in rows if r["estimator"] == name]
        for ax, key in zip(axes, ("steps", "wall_seconds")):
            ax.plot([r[key] for r in mine], [r["test_elbo"] for r in mine], marker="o", label=name)
    axes[0].set_xlabel("SVI steps")
    axes[1].set_xlabel("wall-clock seconds")
    axes[0].set_ylabel("test ELBO (nats per datum)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return save_figure(fig, path)
