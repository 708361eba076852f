"""The latent code put to use: q(z|x) as features for few-label classification, clustering, a picture.

Kingma et al. (2014)'s M1: train a VAE on all images without labels, then fit a classifier
on the posterior means of its code, z_n = E_q[z | x_n], with N labels. :func:`probe`
encodes the training and test images of a run with its guide (the means of q(z|x), or one
draw z ~ q(z|x)), then

* for each N in ``num_labels`` and each of ``draws`` draws of N labelled training images,
  balanced over the classes as ``--num-labels`` draws them (:meth:`Dataset.with_labels`,
  seeds ``seed``, ``seed + 1``, ...), fits each classifier of
  :data:`~pyro_vae.experiments.probe_classifiers.CLASSIFIERS` on their codes and reports its
  error on every test image;
* clusters the test codes by k-means (as many clusters as classes) and reports the
  normalized mutual information (NMI) and adjusted Rand index (ARI) with the labels;
* draws a t-SNE picture of the test codes coloured by label (:mod:`pyro_vae.plots.tsne`).

The code is found generically: the guide is traced on a batch, and the probed site is
its first continuous latent inside the data plate (``z`` of the VAE, of M2 after its
discrete y, of the two-layer VAE before z2). A model whose guide has none, or that needs
the labels to encode (the CVAE's q(z|x, y)), and a data set without labels are refused
with one error naming the reason. :meth:`ProbeResult.table` sets the errors against the
paper's Table 1 (:data:`PAPER`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from tqdm import tqdm

from pyro_vae.data import TEST_BINARIZATION_SEED, UNLABELLED, Dataset
from pyro_vae.experiments.probe_classifiers import CLASSIFIERS, Codes
from pyro_vae.experiments.probe_classifiers import spread as spread  # re-exported, as before the classifiers moved
from pyro_vae.files import atomic_write_json, atomic_write_text, write_csv
from pyro_vae.inference.log_weights import site_distribution, site_value
from pyro_vae.models.program import Program, member
from pyro_vae.models.vae import PosteriorMean
from pyro_vae.plots import save_figure
from pyro_vae.plots.tsne import tsne_figure
from pyro_vae.training import Run
from pyro_vae.training.kinds import run_kind
from pyro_vae.validation import check_distinct

USES = ("mean", "sample")


#: Kingma et al. (2014), Table 1: MNIST test error (%) with 100 / 600 / 1000 / 3000 labels.
PAPER: dict[str, dict[str, dict[int, float]]] = {
    "mnist": {
        "NN on pixels (Kingma et al. 2014)": {100: 25.81, 600: 11.44, 1000: 10.7, 3000: 6.04},
        "M1 + TSVM (Kingma et al. 2014)": {100: 11.82, 600: 5.72, 1000: 4.24, 3000: 3.49},
    },
}


def latent_site(program: Program, x: torch.Tensor, name: str = "the model") -> str:
    """The name of the guide's first continuous latent site inside the data plate, traced on ``x``.

    Raises ``ValueError`` naming the reason when the guide cannot encode ``x`` alone (it
    asks for labels) or has no per-datum continuous latent (only discrete or global sites).
    """
    trace = _guide_trace(program, x, "mean", name)
    plate = member(program, "data_plate_name")
    latents = {}
    for site_name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        per_datum = any(frame.name == plate for frame in site["cond_indep_stack"])
        support = site_distribution(site).support
        discrete = support is not None and support.is_discrete
        if per_datum and not discrete:
            return site_name
        latents[site_name] = "discrete" if discrete else "global, outside the data plate"
    found = ", ".join(f"{k} ({v})" for k, v in latents.items()) or "none"
    raise ValueError(f"the guide of {name} has no per-datum continuous latent to probe; its latent sites: {found}")


def _guide_trace(program: Program, x: torch.Tensor, use: str, name: str) -> poutine.Trace:
    guide = PosteriorMean()(program.guide) if use == "mean" else program.guide
    with pyro.get_param_store().scope():  # a fresh store: no stale global entries
        try:
            return poutine.trace(guide).get_trace(x)
        except ValueError as err:  # e.g. a guide q(z|x, y) that needs the labels
            raise ValueError(f"the guide of {name} cannot encode images alone: {err}") from None


@torch.no_grad()
def encode(
    program: Program,
    x: torch.Tensor,
    site: str,
    use: str = "mean",
    batch_size: int = 1000,
    name: str = "the model",
) -> torch.Tensor:
    """The codes ``(N, D)`` of ``x`` at the guide's ``site``: the means of q(z|x) (``use="mean"``)
    or one draw z ~ q(z|x) each (``use="sample"``, from torch's global RNG), in batches."""
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    device = next(program.parameters()).device
    codes = []
    for start in range(0, len(x), batch_size):
        trace = _guide_trace(program, x[start : start + batch_size].to(device), use, name)
        value = site_value(trace.nodes[site])
        codes.append(value.reshape(len(value), -1).cpu())
    return torch.cat(codes)


def labelled_subset(dataset: Dataset, num_labels: int, seed: int) -> torch.Tensor:
    """Indices of the ``num_labels`` training images, balanced over classes, that
    ``dataset.with_labels(num_labels, seed)`` keeps labelled (the ``--num-labels`` draw)."""
    labels = dataset.with_labels(num_labels, seed).train_labels
    assert labels is not None  # with_labels refuses data without labels (for the type checker)
    return (labels != UNLABELLED).nonzero().squeeze(-1)


@dataclass
class ProbeResult:
    """What :func:`probe` measured: one row per (labels, draw, classifier) with its test error,
    the k-means scores of the test codes, the t-SNE figure and the seconds each part took."""

    model: str
    dataset: str
    site: str
    use: str
    code_dim: int
    num_train: int
    num_test: int
    rows: list[dict] = field(default_factory=list)
    clustering: dict = field(default_factory=dict)
    figure: str | None = None
    seconds: dict = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """Mean and standard deviation (over draws) of the test error per (labels, classifier)."""
        groups: dict[tuple[int, str], list[float]] = {}
        for row in self.rows:
            groups.setdefault((row["num_labels"], row["classifier"]), []).append(row["test_error"])
        return [
            {
                "num_labels": n,
                "classifier": c,
                "mean": statistics.fmean(e),
                "sd": statistics.stdev(e) if len(e) > 1 else 0.0,
                "draws": len(e),
            }
            for (n, c), e in groups.items()
        ]

    def table(self) -> str:
        """Markdown: test error (%) per number of labels, mean ± sd over the draws for each
        classifier, beside the paper's numbers for the data set (:data:`PAPER`), then k-means."""
        summary = self.summary()
        classifiers = list(dict.fromkeys(s["classifier"] for s in summary))
        labels = list(dict.fromkeys(s["num_labels"] for s in summary))
        paper = PAPER.get(self.dataset, {})
        draws = max((s["draws"] for s in summary), default=0)
        head = [f"{c} on {self.use}s of q({self.site}|x)" for c in classifiers] + list(paper)
        lines = [
            f"test error (%) on {self.num_test} {self.dataset} test images, {self.model} code "
            f"({self.code_dim} dimensions), mean ± sd over {draws} draws of the labelled images",
            "",
            "| labels | " + " | ".join(head) + " |",
            "|---:|" + "---:|" * len(head),
        ]
        cells = {(s["num_labels"], s["classifier"]): s for s in summary}
        for n in labels:
            ours = [f"{100 * cells[n, c]['mean']:.2f} ± {100 * cells[n, c]['sd']:.2f}" for c in classifiers]
            theirs = [f"{numbers[n]:.2f}" if n in numbers else "" for numbers in paper.values()]
            lines.append(f"| {n} | " + " | ".join(ours + theirs) + " |")
        if self.clustering:
            lines += [
                "",
                f"k-means ({self.clustering['clusters']} clusters) on the test codes: "
                f"NMI {self.clustering['nmi']:.3f}, ARI {self.clustering['ari']:.3f}",
            ]
        return "\n".join(lines) + "\n"


def _check(dataset: Dataset, num_labels: Sequence[int], draws: int, use: str, classifiers: Sequence[str]) -> None:
    if dataset.train_labels is None or dataset.test_labels is None:
        raise ValueError(f"the data set {dataset.name!r} has no labels: the probe scores the code against them")
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    if not classifiers:
        raise ValueError(f"name at least one classifier of {CLASSIFIERS.names()}")
    for name in classifiers:
        CLASSIFIERS.check(name)
    check_distinct("classifiers", classifiers, "each classifier is one row per draw of the labelled images")
    check_distinct("num_labels", num_labels, "each number of labels is one set of draws")
    for n in num_labels:
        labelled_subset(dataset, n, 0)  # a number of labels the data set cannot give fails here, before encoding


def probe(
    run: Run,
    num_labels: Sequence[int] = (100, 600, 1000, 3000),
    draws: int = 3,
    use: str = "mean",
    classifiers: Sequence[str] | None = None,
    figure: str | Path | None = None,
    tsne_points: int = 2000,
    seed: int = 0,
    batch_size: int = 1000,
    *,
    progress: bool = False,
) -> ProbeResult:
    """Probe the code of ``run``'s program on its labelled data set (see the module docstring).

    :param num_labels: numbers N of labelled training images (multiples of the number of classes).
    :param draws: draws of the N labelled images per N (``with_labels`` seeds ``seed + d``).
    :param use: ``"mean"``: codes are the means of q(z|x); ``"sample"``: one draw each.
    :param classifiers: names in :data:`~pyro_vae.experiments.probe_classifiers.CLASSIFIERS` (default: all of them).
    :param figure: where to write the t-SNE PNG of the first ``tsne_points`` test codes; ``None``: none.
    :param seed: seeds the label draws, the binarization of the training images (for a
        binarized data set, once, as its test images), the codes' draws and k-means.
    :param progress: a tqdm bar on stderr over the steps (encoding, each classifier's fit, k-means,
        t-SNE), naming the one running.
    """
    run_kind(run.config).refuse("probe")
    dataset, program, name = run.dataset, run.program, f"model {run.config.model!r}"
    classifiers = CLASSIFIERS.names() if classifiers is None else classifiers
    _check(dataset, num_labels, draws, use, classifiers)
    num_classes = dataset.num_classes
    # _check refuses data without labels (for the type checker)
    assert dataset.train_labels is not None and dataset.test_labels is not None and num_classes is not None
    steps = 2 + len(num_labels) * draws * len(classifiers) + (figure is not None)
    bar = tqdm(total=steps, desc="probe: encode", unit="step", disable=not progress, leave=False)
    program.eval()
    train = dataset.train
    if dataset.binarize:
        train = torch.bernoulli(train, generator=torch.Generator().manual_seed(TEST_BINARIZATION_SEED + seed))
    clock = time.perf_counter()
    device = next(program.parameters()).device
    site = latent_site(program, dataset.test[:2].to(device), name)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        train_codes = encode(program, train, site, use, batch_size, name).double().numpy()
        test_codes = encode(program, dataset.test, site, use, batch_size, name).double().numpy()
    codes = Codes(train_codes, test_codes, dataset.train_labels.numpy(), num_classes)
    result = ProbeResult(
        run.config.model,
        dataset.name,
        site,
        use,
        train_codes.shape[1],
        len(train_codes),
        len(test_codes),
        seconds={"encode": time.perf_counter() - clock},
    )
    bar.update()
    test_labels = dataset.test_labels.numpy()
    clock = time.perf_counter()
    for n in num_labels:
        for draw in range(draws):
            index = labelled_subset(dataset, n, seed + draw).numpy()
            for classifier in classifiers:
                bar.set_description(f"probe: {classifier}, {n} labels, draw {draw + 1}/{draws}")
                error = float(np.mean(CLASSIFIERS[classifier](codes, index) != test_labels))
                result.rows.append(
                    {"num_labels": n, "draw": draw, "seed": seed + draw, "classifier": classifier, "test_error": error}
                )
                bar.update()
    result.seconds["classifiers"] = time.perf_counter() - clock
    clock = time.perf_counter()
    bar.set_description("probe: k-means")
    clusters = KMeans(num_classes, n_init=10, random_state=seed).fit_predict(test_codes)
    result.clustering = {
        "clusters": num_classes,
        "nmi": normalized_mutual_info_score(test_labels, clusters),
        "ari": adjusted_rand_score(test_labels, clusters),
    }
    result.seconds["kmeans"] = time.perf_counter() - clock
    bar.update()
    if figure is not None:
        clock = time.perf_counter()
        bar.set_description(f"probe: t-SNE of {min(tsne_points, len(test_codes))} codes")
        title = f"t-SNE of the {use}s of q({site}|x), {min(tsne_points, len(test_codes))} {dataset.name} test images"
        drawing = tsne_figure(torch.from_numpy(test_codes), dataset.test_labels, tsne_points, seed, title)
        result.figure = str(save_figure(drawing, figure))
        result.seconds["tsne"] = time.perf_counter() - clock
        bar.update()
    bar.close()
    return result


def write_probe(result: ProbeResult, out_dir: str | Path) -> list[Path]:
    """``probe.csv`` (one row per labels, draw and classifier), ``probe.json`` (everything)
    and ``probe.md`` (:meth:`ProbeResult.table`) in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_csv(result.rows, out_dir / "probe.csv"),
        atomic_write_json(out_dir / "probe.json", asdict(result)),
        atomic_write_text(out_dir / "probe.md", result.table()),
    ]
