"""Graph data sets for link prediction: the Planetoid citation graphs and a planted partition.

Where the Planetoid files come from (as for MNIST in :mod:`pyro_vae.data`):
``data_dir`` (``--data-dir``), else ``$PYRO_VAE_DATA``, names a folder holding
``Planetoid/{Cora,CiteSeer,PubMed}/raw/ind.<name>.*``. It may be read-only, so
the raw files are copied into the writable cache (``$PYRO_VAE_CACHE``, default
``~/.cache/pyro_vae``), ``Planetoid/<Name>/raw/``, where PyTorch Geometric's
:class:`~torch_geometric.datasets.Planetoid` processes them. The folder given
always wins: it must hold every raw file, and a cached copy that differs from
it (truncated, damaged) is copied again (:func:`prepare_planetoid_files`).
PyG's processed graph ``processed/data.pt`` is verified as the raw files are:
its md5 is recorded when it is written and checked when it is read, and a
processed file that is damaged, of another data set or made from other raw
files is rebuilt from the raw files (:func:`load_processed`); a raw file PyG
cannot read is named (:func:`damaged_raw_file`).
Without a folder, PyG downloads what the cache lacks; offline that ends in one
:class:`~pyro_vae.data.DatasetNotFoundError` naming the missing files (the
shared folder lacks PubMed's ``ind.pubmed.allx``).

The graph data sets are registered in :data:`pyro_vae.data.DATASETS` with
``data_kind = "graph"``: a loader returns a :class:`Graph`, and only a graph model
(``data_kind = "graph"``, :mod:`pyro_vae.models.vgae`) trains on one.

Every graph is undirected, without self-loops, with node features ``x``
(Planetoid: the binary bag-of-words features as given, not normalized, as in
Kipf & Welling 2016) and class labels ``y`` (for plots only).

The link split is PyG's :class:`~torch_geometric.transforms.RandomLinkSplit`
with the paper's fractions: 85% of the undirected edges for training, 5% for
validation, 10% for testing, each held-out set with as many non-edges, sampled
uniformly from the pairs that are not edges of the full graph. The split is a
deterministic function of ``seed`` and leaves the global RNGs untouched.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae.data.cache import (
    ENV_DATA,
    CorruptDataError,
    DatasetNotFoundError,
    cache_dir,
    cache_error,
    cache_lock,
    checksums_match,
    one_line,
    record_checksums,
)
from pyro_vae.data.cache import (
    file_md5 as md5,
)
from pyro_vae.data.sources import DATASETS, load_dataset
from pyro_vae.files import atomic_write_stream
from pyro_vae.graph_tensors import check_graph, pyg


@dataclass
class Graph:
    """An undirected graph with node features.

    :param x: node features, shape ``(N, F)``, float.
    :param edge_index: every undirected edge in both directions, shape ``(2, 2E)``, long.
    :param y: node classes, shape ``(N,)``, or ``None``.
    """

    name: str
    x: torch.Tensor
    edge_index: torch.Tensor
    y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_graph(self.x, self.edge_index)

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def num_features(self) -> int:
        return self.x.shape[1]

    @property
    def num_edges(self) -> int:
        """Number of undirected edges E."""
        return self.edge_index.shape[1] // 2


@dataclass
class LinkSplit:
    """A graph whose edges are split for link prediction.

    ``train_edge_index`` holds the training edges in both directions (the only
    edges the encoder and the likelihood see); ``{val,test}_{pos,neg}`` are
    held-out edges and non-edges, shape ``(2, K)``, one direction each.
    """

    graph: Graph
    train_edge_index: torch.Tensor
    val_pos: torch.Tensor
    val_neg: torch.Tensor
    test_pos: torch.Tensor
    test_neg: torch.Tensor


PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def prepare_planetoid_files(name: str, root: Path | None, cache: Path) -> None:
    """Make ``cache/<name>/raw`` hold verified copies of Planetoid ``name``'s raw files,
    from ``root/Planetoid/<name>/raw`` when ``root`` is given (as
    :func:`pyro_vae.data.prepare_raw_files` does for MNIST).

    ``root`` given: it must exist and hold every raw file
    (:class:`~pyro_vae.data.DatasetNotFoundError` naming the missing ones otherwise);
    every cached copy whose md5 differs from the source's (truncated, damaged, another
    version) is replaced, and PyG's processed files, made from the old copies, are
    removed so that PyG processes the new ones. ``root`` ``None``: the cache is used as
    it is, and PyG downloads what is missing.
    """
    if root is None:
        return
    source, raw = root / "Planetoid" / name / "raw", cache / name / "raw"
    files = [path.name for path in raw_paths(name, source)]
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"{name} is not on disk: the data folder {root} (--data-dir or ${ENV_DATA}) does not exist; "
            f"expected the files {', '.join(files)} in {source}"
        )
    missing = [f for f in files if not (source / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{name} is not on disk: {source} lacks {', '.join(missing)}; expected the files {', '.join(files)} "
            f"there (PyG's layout Planetoid/{name}/raw/), or drop --data-dir / ${ENV_DATA} to download"
        )
    try:
        replaced = False
        for f in files:
            if not ((raw / f).is_file() and md5(raw / f) == md5(source / f)):
                raw.mkdir(parents=True, exist_ok=True)
                with open(source / f, "rb") as stream:
                    atomic_write_stream(raw / f, stream)
                replaced = True
        if replaced:
            shutil.rmtree(cache / name / "processed", ignore_errors=True)
    except OSError as err:
        if err.filename is None or not str(err.filename).startswith(str(cache)):
            raise
        raise cache_error(err, cache) from None


class PlanetoidLoader:
    """The loader of Planetoid ``name`` (``Cora``, ``CiteSeer``, ``PubMed``) for
    :data:`~pyro_vae.data.DATASETS`: a :class:`Graph`, through the verified cache."""

    data_kind = "graph"

    def __init__(self, name: str) -> None:
        self.name = name
        self.__doc__ = f"Planetoid {name} citation graph (PyG), features as given"

    def __call__(self, root: Path | None) -> Graph:
        cache = cache_dir() / "Planetoid"
        prepare_planetoid_files(self.name, root, cache)
        try:
            data = load_processed(self.name, cache)
        except Exception as err:  # PyG raises URLError, OSError, pickle's errors, ...
            raise self.failure(err, root, cache) from None
        utils = pyg("utils")
        edge_index = utils.to_undirected(utils.remove_self_loops(data.edge_index)[0], num_nodes=data.num_nodes)
        return Graph(self.name.lower(), data.x.float(), edge_index, data.y)

    def failure(self, err: Exception, root: Path | None, cache: Path) -> Exception:
        """The one error to raise for ``err``, raised while loading the graph from ``cache``: a cache
        that cannot be written, raw files that are missing and could not be downloaded (named), or
        a raw file that PyG cannot read (:func:`damaged_raw_file`)."""
        raw = cache / self.name / "raw"
        if isinstance(err, OSError) and err.filename is not None and str(err.filename).startswith(str(cache)):
            return cache_error(err, cache)
        missing = [path.name for path in raw_paths(self.name, raw) if not path.is_file()]
        if missing:
            return DatasetNotFoundError(
                f"{self.name} is not in the cache {raw} and could not be downloaded ({one_line(err)}); "
                f"missing there: {missing}. Point --data-dir or ${ENV_DATA} at a folder holding "
                f"Planetoid/{self.name}/raw/."
            )
        return damaged_raw_file(self.name, raw, root, err)


def raw_paths(name: str, folder: Path) -> list[Path]:
    """The raw files of Planetoid ``name`` in ``folder`` (``ind.<name>.<part>``)."""
    return [folder / f"ind.{name.lower()}.{part}" for part in PLANETOID_PARTS]


#: The file, in PyG's ``processed/`` folder, recording the md5s of the processed graph ``data.pt``
#: and of the raw files it was made from (:func:`load_processed`).
PROCESSED_RECORD = "pyro_vae-checksums.json"


def load_processed(name: str, cache: Path):
    """PyG's ``Planetoid(cache, name)[0]``, its processed file ``processed/data.pt`` verified like
    the raw files: it is read only when its md5, the raw files' md5s and the data set's name are
    those recorded when it was written (:data:`PROCESSED_RECORD`); otherwise it is rebuilt from
    the raw files (PyG downloads those missing) and recorded anew, one process at a time. So a
    damaged ``data.pt``, one of another data set put in the slot (CiteSeer's in Cora's) or one
    made from other raw files is never trained on."""
    folder, planetoid = cache / name, pyg("datasets").Planetoid
    processed = folder / "processed"
    files, record = [*raw_paths(name, folder / "raw"), processed / "data.pt"], processed / PROCESSED_RECORD
    if not checksums_match(record, files, dataset=name):
        with cache_lock(folder):
            if not checksums_match(record, files, dataset=name):  # else another process rebuilt it meanwhile
                shutil.rmtree(processed, ignore_errors=True)
                planetoid(str(cache), name)  # processes the raw files into processed/data.pt
                record_checksums(record, files, dataset=name)
    return planetoid(str(cache), name)[0]


def damaged_raw_file(name: str, raw: Path, root: Path | None, err: Exception) -> CorruptDataError:
    """The error naming the raw file of Planetoid ``name`` in ``raw`` that PyG cannot read (each
    is read as PyG reads it), after processing failed with ``err``. A file of the data folder
    ``root`` is to be replaced by the user; a cached copy of a download is removed, so that the
    next load downloads it again."""
    unreadable = _unreadable(name, raw)
    if unreadable is None:
        return CorruptDataError(
            f"the raw files of {name} in {raw} cannot be processed ({one_line(err)}); one of them is damaged "
            f"or of another version: replace them"
        )
    path, cause = unreadable
    if root is not None:
        return CorruptDataError(
            f"{root / 'Planetoid' / name / 'raw' / path.name} is damaged (truncated?): PyG cannot read it ({cause}); "
            "replace it"
        )
    path.unlink(missing_ok=True)
    return CorruptDataError(
        f"the cached {path} was damaged (truncated?): PyG cannot read it ({cause}); it is removed and the next "
        f"run downloads it again, or point --data-dir or ${ENV_DATA} at a folder holding Planetoid/{name}/raw/"
    )


def _unreadable(name: str, raw: Path) -> tuple[Path, str] | None:
    """The first raw file of Planetoid ``name`` in ``raw`` that PyG cannot read and why, or ``None``."""
    read_file = pyg("io.planetoid").read_file
    for part, path in zip(PLANETOID_PARTS, raw_paths(name, raw)):
        try:
            read_file(str(raw), name, part)
        except Exception as err:  # pickle's errors, EOFError, ValueError, ...
            return path, one_line(err)
    return None


for _name in ("Cora", "CiteSeer", "PubMed"):
    DATASETS.register(_name.lower(), PlanetoidLoader(_name))


def planted_partition(
    root: Path | None = None,
    num_nodes: int = 100,
    num_blocks: int = 2,
    p_in: float = 0.9,
    p_out: float = 0.01,
    seed: int = 0,
) -> Graph:
    """Planted partition: dense blocks (edge prob. p_in) joined sparsely (p_out); one-hot features.

    Node i lies in block ``i * num_blocks // num_nodes``; the features are the
    identity (featureless, as the paper's GAE*/VGAE* variants). No files needed.
    """
    g = torch.Generator().manual_seed(seed)
    block = torch.arange(num_nodes) * num_blocks // num_nodes
    same = block[:, None] == block[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < prob, diagonal=1)
    i, j = upper.nonzero().T
    edge_index = torch.cat([torch.stack([i, j]), torch.stack([j, i])], dim=1)
    return Graph("planted-partition", torch.eye(num_nodes), edge_index, block)


setattr(planted_partition, "data_kind", "graph")  # an attribute of the function, which mypy does not model
DATASETS.register("planted-partition", planted_partition)


def load_graph(name: str, data_dir_: str | Path | None = None) -> Graph:
    """The graph data set ``name`` of :data:`~pyro_vae.data.DATASETS` (files: see the module docstring)."""
    graph = load_dataset(name, data_dir_)
    if not isinstance(graph, Graph):
        raise ValueError(f"the data set {name!r} is not a graph")
    return graph


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's and Python's global RNGs (PyG's negative sampling uses both), then restore them."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def link_split(graph: Graph, seed: int = 0, val: float = 0.05, test: float = 0.1) -> LinkSplit:
    """Split the edges of ``graph`` for link prediction (paper: 85/5/10) with PyG's
    ``RandomLinkSplit``; held-out non-edges are sampled from the full graph's non-edges."""
    if graph.num_edges < 20:
        raise ValueError(f"graph {graph.name!r} has {graph.num_edges} edges; a link split needs at least 20")
    split = pyg("transforms").RandomLinkSplit(
        num_val=val, num_test=test, is_undirected=True, add_negative_train_samples=False, split_labels=True
    )
    with _seeded(seed):
        train, valid, tested = split(
            pyg("data").Data(x=graph.x, edge_index=graph.edge_index, num_nodes=graph.num_nodes)
        )
    return LinkSplit(
        graph=graph,
        train_edge_index=train.edge_index,
        val_pos=valid.pos_edge_label_index,
        val_neg=valid.neg_edge_label_index,
        test_pos=tested.pos_edge_label_index,
        test_neg=tested.neg_edge_label_index,
    )
