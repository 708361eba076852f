"""The estimator study: gradient variance across training, particles and latent size,
and training curves for every estimator. Driven by ``pyro-vae variance``.

Steps, all written under ``out_dir``:

1. Train one VAE per estimator for the same number of epochs, each with its own number of
   particles (``estimator_particles``, else the base config's)
   (``train-<estimator>/``, resumable); ``training.csv`` and ``elbo_curves.png``
   give the test ELBO against steps, against wall-clock time (which counts whatever else ran
   on the machine then) and against ``estimate_seconds``: the steps times the estimator's
   ``ms_per_estimate`` measured in step 2 at the last epoch, the same load for all.
2. At the reference estimator's run (``reference``: ``reparam`` unless named, e.g. ``disarm``
   for a discrete latent), at its initialization, after its first epoch and at its
   last epoch, compare all estimators on one fixed test minibatch, each with its own number
   of particles (``experiment = training`` rows of ``variance.csv``; ``variance_training.png``,
   ``snr_training.png``).
3. At the last epoch, repeat with L = each of ``num_particles`` samples per datum, every
   estimator that takes L (``experiment = particles``; ``variance_particles.png``).
4. For each latent size in ``z_dims``, train the reference for one epoch and
   compare there (``experiment = latent``; ``variance_latent.png``).

What a user pays for the variance: every row also holds ``evaluations_per_datum``, the values of
log p(x | z) one gradient estimate computes per datum (:func:`model_evaluations`, counted: 1 for
``score``, K for VIMCO with K particles, 2K for K antithetic pairs, 3 for REBAR), the estimate's
wall time ``ms_per_estimate`` (one training step less the optimizer's update, measured on the same
parameters in the same process for all) and ``variance_x_seconds`` = tr Cov x seconds per
estimate: the variance of the mean of the estimates one second of compute buys, lower is better
(``variance_time.png``).

``summary.md`` holds the table at the last epoch.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from pyro.poutine.messenger import Messenger
from tqdm import tqdm

from pyro_vae.experiments.variance_report import (
    particles_table,
    plot_elbo_curves,
    plot_variance,
    plot_variance_time,
    summary_table,
)
from pyro_vae.files import write_csv
from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.inference.estimators import ESTIMATORS, make_estimator
from pyro_vae.inference.variance import compare_estimators, refusal
from pyro_vae.training import TrainConfig, build_run, load_run, train_or_resume
from pyro_vae.training.kinds import run_kind
from pyro_vae.validation import COUNT, Rule, at_least, check_distinct, check_fields, each, rules


@dataclasses.dataclass
class StudyConfig:
    """Budget of the study; ``base`` fixes the data set and architecture."""

    base: TrainConfig
    estimators: Sequence[str] | None = None  # None: every registered estimator that applies to the program
    num_draws: int = dataclasses.field(
        default=100, metadata=rules(Rule("be >= 2 (a variance needs two draws)", lambda n: n >= 2))
    )
    adapt_steps: int = dataclasses.field(default=300, metadata=rules(at_least(0)))
    # the sample counts L per datum of step 3
    num_particles: Sequence[int] = dataclasses.field(default=(1, 4, 16), metadata=rules(each(COUNT)))
    z_dims: Sequence[int] = dataclasses.field(default=(2, 5, 10, 20, 50), metadata=rules(each(COUNT)))
    reference: str | None = None  # None: reparam; at a trained run (compare_at_run), the run's own estimator
    estimator_options: dict[str, dict] = dataclasses.field(default_factory=dict)  # estimator -> its options
    # estimator -> its number of particles in steps 1, 2 and 4 (e.g. {"vimco": 2}); others: base.num_particles
    estimator_particles: dict[str, int] = dataclasses.field(
        default_factory=dict,
        metadata=rules(Rule("give each estimator >= 1 particles", lambda counts: all(k >= 1 for k in counts.values()))),
    )

    def __post_init__(self) -> None:
        if self.estimators is not None:
            self.estimators = [ESTIMATORS.check(name) for name in self.estimators]
            check_distinct("estimators", self.estimators, "each estimator is one row of the study")
        if self.reference is not None:
            ESTIMATORS.check(self.reference)
        for name in self.estimator_particles:
            ESTIMATORS.check(name)
        check_fields(self)


def particles_of(study: StudyConfig, name: str) -> int:
    """The number of particles the study trains and measures estimator ``name`` with."""
    return study.estimator_particles.get(name, study.base.num_particles)


class _ObservedValues(Messenger):
    """Counts, per observed site, the values of its log density that are computed (the number of
    elements of its batch shape, particles included), over every run of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["is_observed"]:
            self.counts[msg["name"]] += msg["fn"].batch_shape.numel()


def model_evaluations(
    program, name: str, x: torch.Tensor, num_particles: int = 1, options: dict | None = None
) -> float:
    """The values of log p(x | z) per datum that one gradient estimate of the registered estimator
    ``name`` computes on ``x``: the observed site evaluated most, its log densities counted over every
    run of the model during one ``loss_and_grads`` (e.g. 2K for K antithetic pairs, K for VIMCO with
    K particles, 3 for REBAR: b, its relaxation and the conditional one), divided by the ``len(x)``
    data. The parameters' gradients and torch's RNG are left as they were."""
    estimator = make_estimator(name, program, num_particles, options)
    params = [*program.parameters(), *estimator.modules.parameters()]
    grads = [p.grad for p in params]
    counter = _ObservedValues()
    with torch.random.fork_rng(), ParamScope(params), counter:
        estimator.elbo.loss_and_grads(program.model, estimator.guide, x=x)
    for p, grad in zip(params, grads):
        p.grad = grad
    return max(counter.counts.values(), default=0) / len(x)


def _compare(
    run, study: StudyConfig, names: Sequence[str] | None, num_particles: int, generator: torch.Generator
) -> list[dict]:
    """The rows of :func:`compare_estimators` for ``names`` (``None``: every one that applies) at
    ``num_particles`` on the first test minibatch, each with its cost (``evaluations_per_datum``,
    ``variance_x_seconds``)."""
    data, bs = run.dataset, study.base.batch_size
    device = next(run.program.parameters()).device
    x = data.test[:bs].to(device)
    adapt = [b for _, b in zip(range(study.adapt_steps), _cycle(data, bs, generator, device))]
    rows = compare_estimators(
        run.program,
        x,
        names,
        study.num_draws,
        num_particles,
        adapt,
        study.reference,
        generator,
        study.estimator_options,
    )
    evaluations = {
        name: model_evaluations(run.program, name, x, num_particles, study.estimator_options.get(name))
        for name in dict.fromkeys(row["estimator"] for row in rows)
    }
    for row in rows:
        row["evaluations_per_datum"] = evaluations[row["estimator"]]
        row["variance_x_seconds"] = row["total_variance"] * row["ms_per_estimate"] / 1e3
    return rows


def _compare_each(run, study: StudyConfig, generator: torch.Generator) -> list[dict]:
    """Every estimator of the study with its own number of particles (:func:`particles_of`); the
    reference is drawn at each of those numbers, so each ratio is to the reference with as many."""
    groups: dict[int, list[str]] = {}
    for name in study.estimators or ():  # run_study has named them all
        groups.setdefault(particles_of(study, name), []).append(name)
    return [row for k, names in groups.items() for row in _compare(run, study, names, k, generator)]


def _cycle(data, batch_size, generator, device):
    while True:
        yield from data.train_batches(batch_size, generator, device)


def refusals(run, study: StudyConfig, num_particles: int | None = None) -> dict[str, str | None]:
    """Why each registered estimator cannot estimate the gradient of ``run``'s program with
    ``num_particles`` particles (``None``: each with its own, :func:`particles_of`), on its first test
    batch (:func:`~pyro_vae.inference.variance.refusal`); ``None`` for one that can."""
    x = run.dataset.test[: study.base.batch_size].to(next(run.program.parameters()).device)
    return {
        name: refusal(
            run.program, name, x, num_particles or particles_of(study, name), study.estimator_options.get(name)
        )
        for name in ESTIMATORS
    }


def applicable_estimators(run, study: StudyConfig, num_particles: int | None = None) -> list[str]:
    """The registered estimators that :func:`refusals` lets estimate ``run``'s gradient."""
    return [name for name, why in refusals(run, study, num_particles).items() if why is None]


def run_study(
    study: StudyConfig,
    out_dir: str | Path,
    data_dir=None,
    device: str = "cpu",
    *,
    progress: bool = False,
    data: object = None,
) -> list[dict]:
    """Run every step of the study (see the module docstring); return the variance rows. With
    ``progress``, a tqdm bar on stderr counts the trainings and comparisons, naming the one running.
    ``data``: the user's own data (:func:`~pyro_vae.data.read_data`'s), for a base config whose
    ``dataset`` is the user's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = study.base
    generator = torch.Generator().manual_seed(base.seed)
    reference = study.reference or "reparam"
    study = dataclasses.replace(study, reference=reference)

    def config_of(name: str, **changes) -> TrainConfig:
        return dataclasses.replace(
            base,
            estimator=name,
            num_particles=particles_of(study, name),
            estimator_options=study.estimator_options.get(name, {}),
            **changes,
        )

    # 1. training curves of every estimator (by default every one that applies to the program)
    start = build_run(config_of(reference), data_dir, device, data=data)
    why_not = refusals(start, study)
    applicable = [name for name, why in why_not.items() if why is None]
    names = study.estimators or applicable
    for name in names:  # before any training, not at the comparison
        if name != reference and why_not[name] is not None:
            raise ValueError(f"the estimator {name!r} cannot be measured on this program: {why_not[name]}")
    if reference not in names or reference not in applicable:
        raise ValueError(
            f"the full study measures every estimator at points of the run of its reference {reference!r}, "
            f"which this program or study leaves out (estimators {names}, applicable {applicable}); name a "
            "reference among them: --reference NAME (e.g. disarm for a discrete latent), or train the program "
            "with its own estimator and compare there: pyro-vae variance --run-dir RUN [--reference NAME]"
        )
    study = dataclasses.replace(study, estimators=names)
    epochs = sorted({1, base.epochs})
    steps = len(names) + 1 + len(epochs) + len(study.num_particles) + len(study.z_dims)
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    runs = {}
    for name in names:
        bar.set_description(f"variance: train {name}")
        runs[name] = train_or_resume(
            config_of(name),
            out_dir / f"train-{name}",
            data_dir=data_dir,
            data=data,
            device=device,
            progress=False,
            keep_every=int(name == reference),  # the reference's epochs are the points of step 2
        )
        bar.update()
    # 2. variance at points of the reference's run
    reference_dir = out_dir / f"train-{reference}"
    points = {0: start}
    for epoch in epochs:
        points[epoch] = load_run(
            reference_dir,
            data_dir,
            device,
            checkpoint=reference_dir / "checkpoints" / f"epoch-{epoch:04d}.pt",
            data=data,
        )
    rows = []
    for epoch, run in points.items():
        bar.set_description(f"variance: compare at epoch {epoch}")
        for row in _compare_each(run, study, generator):
            rows.append({"experiment": "training", "epoch": epoch, "z_dim": base.z_dim, **row})
        bar.update()

    # the training curves, with the time each run's steps take at its estimator's measured cost
    seconds_per_step = {
        r["estimator"]: r["ms_per_estimate"] / 1e3 for r in rows if r["epoch"] == base.epochs and r["params"] == "guide"
    }
    training_rows = [{"estimator": n, **m} for n, r in runs.items() for m in r.metrics]
    for row in training_rows:
        row["steps"] = row["samples_seen"] // base.batch_size
        row["estimate_seconds"] = row["steps"] * seconds_per_step[row["estimator"]]
    write_csv(training_rows, out_dir / "training.csv")
    plot_elbo_curves(training_rows, out_dir / "elbo_curves.png")

    # 3. number of particles, at the last epoch: every estimator that takes that many
    for particles in study.num_particles:
        bar.set_description(f"variance: compare with {particles} particles")
        taking = set(applicable_estimators(points[base.epochs], study, particles))
        for row in _compare(points[base.epochs], study, [n for n in names if n in taking], particles, generator):
            rows.append({"experiment": "particles", "epoch": base.epochs, "z_dim": base.z_dim, **row})
        bar.update()

    # 4. latent size, after one epoch of training each
    for z_dim in study.z_dims:
        bar.set_description(f"variance: train and compare z_dim={z_dim}")
        config = config_of(reference, z_dim=z_dim, epochs=1)
        run = train_or_resume(
            config, out_dir / f"latent-z{z_dim}", data_dir=data_dir, data=data, device=device, progress=False
        )
        for row in _compare_each(run, study, generator):
            rows.append({"experiment": "latent", "epoch": 1, "z_dim": z_dim, **row})
        bar.update()
    bar.close()

    write_csv(rows, out_dir / "variance.csv")
    plot_variance(rows, "training", "epoch", out_dir / "variance_training.png")
    plot_variance(rows, "training", "epoch", out_dir / "snr_training.png", stat="snr")
    plot_variance(rows, "particles", "num_particles", out_dir / "variance_particles.png")
    plot_variance(rows, "latent", "z_dim", out_dir / "variance_latent.png")
    plot_variance_time(rows, base.epochs, out_dir / "variance_time.png")
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
            for row in _compare(run, study, study.estimators, particles, generator)
        ]
    write_csv(rows, out_dir / "variance.csv")
    summary = summary_table(rows, epoch)
    plot_variance_time(rows, epoch, out_dir / "variance_time.png")
    if num_particles:
        plot_variance(rows, "particles", "num_particles", out_dir / "variance_particles.png")
        plot_variance(rows, "particles", "num_particles", out_dir / "snr_particles.png", stat="snr")
        summary += "\n" + particles_table(rows)
    (out_dir / "summary.md").write_text(summary)
    return rows
