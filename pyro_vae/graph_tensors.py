"""Graph tensors, below every layer that uses them: the check of node features and
edges (:func:`check_graph`), and PyTorch Geometric imported on first use (:func:`pyg`).

The graph model (:mod:`pyro_vae.models.vgae`) and the graph data sets
(:mod:`pyro_vae.data.graphs`) both import from here, not from each other.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch
from pyro.infer.util import is_validation_enabled


def check_graph(x: torch.Tensor, edge_index: torch.Tensor) -> None:
    """Raise one clear ``ValueError``/``TypeError`` unless ``x`` is a ``(N, F)`` float tensor,
    finite (checked while Pyro's validation is enabled: a pass over all features), and
    ``edge_index`` a ``(2, M)`` integer tensor of node ids in [0, N)."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 2:
        raise TypeError(f"node features must be a float tensor of shape (num_nodes, num_features), got {_describe(x)}")
    if is_validation_enabled() and not torch.isfinite(x).all():
        raise ValueError(f"node features contain {int((~torch.isfinite(x)).sum())} NaN or infinite values")
    if (
        not torch.is_tensor(edge_index)
        or edge_index.dtype != torch.long
        or edge_index.dim() != 2
        or edge_index.shape[0] != 2
    ):
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
