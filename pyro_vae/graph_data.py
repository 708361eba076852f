"""Graph data sets for link prediction: the Planetoid citation graphs and a planted partition.

Where the Planetoid files come from (as for MNIST in :mod:`pyro_vae.data`):
``data_dir`` (``--data-dir``), else ``$PYRO_VAE_DATA``, names a folder holding
``Planetoid/{Cora,CiteSeer,PubMed}/raw/ind.<name>.*``. It may be read-only, so
the raw files are copied into the writable cache (``$PYRO_VAE_CACHE``, default
``~/.cache/pyro_vae``), ``Planetoid/<Name>/raw/``, where PyTorch Geometric's
:class:`~torch_geometric.datasets.Planetoid` processes them. A raw file missing
from both folders is downloaded by PyG; offline that ends in one
:class:`~pyro_vae.data.DatasetNotFoundError` naming the missing files (the
shared folder lacks PubMed's ``ind.pubmed.allx``).

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
import importlib
import random
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from pyro.infer.util import is_validation_enabled

from pyro_vae.data import DatasetNotFoundError, cache_dir, data_dir
from pyro_vae.registry import Registry


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


def check_graph(x: torch.Tensor, edge_index: torch.Tensor) -> None:
    """Raise one clear ``ValueError``/``TypeError`` unless ``x`` is a ``(N, F)`` float tensor,
    finite (checked while Pyro's validation is enabled: a pass over all features), and
    ``edge_index`` a ``(2, M)`` integer tensor of node ids in [0, N)."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 2:
        raise TypeError(f"node features must be a float tensor of shape (num_nodes, num_features), got {_describe(x)}")
    if is_validation_enabled() and not torch.isfinite(x).all():
        raise ValueError(f"node features contain {int((~torch.isfinite(x)).sum())} NaN or infinite values")
    if not torch.is_tensor(edge_index) or edge_index.dtype != torch.long or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise TypeError(f"edge_index must be a long tensor of shape (2, num_edges), got {_describe(edge_index)}")
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= x.shape[0]):
        raise ValueError(
            f"edge_index holds node ids in [{int(edge_index.min())}, {int(edge_index.max())}], "
            f"outside [0, {x.shape[0]}) for a graph of {x.shape[0]} nodes"
        )


def _describe(t: object) -> str:
    return f"{t.dtype} tensor of shape {tuple(t.shape)}" if torch.is_tensor(t) else type(t).__name__


def pyg(module: str) -> ModuleType:
    """``torch_geometric.<module>``, imported on first use (so ``pyro-vae --help`` stays fast)
    without PyG's import-time FutureWarning that ``torch.jit.script`` is deprecated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module(f"torch_geometric.{module}")


GRAPH_DATASETS: Registry = Registry("graph dataset")


def _planetoid(name: str, root: Path | None) -> Graph:
    """Load Planetoid ``name`` (``Cora``, ``CiteSeer``, ``PubMed``) through the cache."""
    cache = cache_dir() / "Planetoid"
    raw = cache / name / "raw"
    source = root / "Planetoid" / name / "raw" if root is not None else None
    if source is not None and source.is_dir():
        raw.mkdir(parents=True, exist_ok=True)
        for path in source.glob(f"ind.{name.lower()}.*"):
            if not (raw / path.name).exists():
                shutil.copyfile(path, raw / path.name)
    expected = [f"ind.{name.lower()}.{part}" for part in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]
    try:
        data = pyg("datasets").Planetoid(str(cache), name)[0]
    except Exception as err:  # PyG raises URLError, OSError, ... when the download fails
        missing = [f for f in expected if not (raw / f).exists()]
        where = source if source is not None else raw
        raise DatasetNotFoundError(
            f"{name} is not on disk and could not be downloaded ({type(err).__name__}: {err}); "
            f"missing raw files {missing} in {where}. Point --data-dir or $PYRO_VAE_DATA at a folder "
            f"holding Planetoid/{name}/raw/."
        ) from None
    utils = pyg("utils")
    edge_index = utils.to_undirected(utils.remove_self_loops(data.edge_index)[0], num_nodes=data.num_nodes)
    return Graph(name.lower(), data.x.float(), edge_index, data.y)


for _name in ("Cora", "CiteSeer", "PubMed"):
    GRAPH_DATASETS.register(
        _name.lower(),
        lambda root, _name=_name: _planetoid(_name, root),
        help=f"Planetoid {_name} citation graph (PyG), features as given",
    )


@GRAPH_DATASETS.register("planted-partition")
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


def load_graph(name: str, data_dir_: str | Path | None = None) -> Graph:
    """The graph data set ``name`` of :data:`GRAPH_DATASETS` (files: see the module docstring)."""
    return GRAPH_DATASETS[name](data_dir(data_dir_))


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
        train, valid, tested = split(pyg("data").Data(x=graph.x, edge_index=graph.edge_index, num_nodes=graph.num_nodes))
    return LinkSplit(
        graph=graph,
        train_edge_index=train.edge_index,
        val_pos=valid.pos_edge_label_index,
        val_neg=valid.neg_edge_label_index,
        test_pos=tested.pos_edge_label_index,
        test_neg=tested.neg_edge_label_index,
    )
