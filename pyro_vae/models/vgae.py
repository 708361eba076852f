"""The variational graph autoencoder (Kipf & Welling 2016) as a Pyro model/guide pair.

Generative model, for a graph of N nodes::

    z_i ~ N(0, I_D)                                  i = 1..N    (plate ``nodes``)
    A_ij ~ Bernoulli(sigmoid(z_i . z_j))             (i, j) in the pair set (plate ``pairs``)

Inference model (the guide), a two-layer GCN over the features X and the
training adjacency A (Kipf & Welling 2017, with A~ = D^-1/2 (A + I) D^-1/2)::

    H = ReLU(A~ X W0)                                (32 units)
    q(z_i | X, A) = N(mu_i, diag sigma_i^2),  mu = A~ H W_mu,  log sigma = A~ H W_sigma   (16 units)

:class:`GAE` is the non-variational graph autoencoder: the same likelihood with
a point-mass guide ``z_i = mu_i`` and no prior term, so its ELBO is the
log-likelihood log p(A | z = mu).

The pair set and its weights are a :class:`Pairs`: which A_ij are observed,
their values, a per-pair scale (``poutine.scale``) and a scale of the whole
program. :func:`paper_pairs` builds the objective of the paper (code:
``tkipf/gae``), see its docstring. Sites are ``z`` and ``A`` in plates ``nodes``
and ``pairs``; ``prefix="g"`` names them ``g.z``, ``g.A``, ``g.nodes``, ``g.pairs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method

from pyro_vae.graph_tensors import check_graph, pyg
from pyro_vae.models.program import DataSpec, register_model
from pyro_vae.validation import COUNT, InputError


@dataclass
class Pairs:
    """The observed entries of the adjacency matrix and their weights.

    :param index: ``(2, P)`` node pairs (i, j), or ``None`` for all N*N ordered
        pairs in row-major order (the dense adjacency).
    :param target: ``(P,)`` observed A_ij in {0, 1} (float), or ``None`` to sample them.
    :param weight: ``(P,)`` positive scale of each log p(A_ij | z), or ``None`` (1).
    :param scale: scale of the whole program, model and guide (the log-density of
        every site is multiplied by it).
    """

    index: torch.Tensor | None = None
    target: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    scale: float = 1.0

    def size(self, num_nodes: int) -> int:
        """Number P of pairs, checking ``index``, ``target`` and ``weight`` against ``num_nodes``."""
        if self.index is None:
            size = num_nodes * num_nodes
        else:
            check_graph(torch.empty(num_nodes, 0), self.index)
            size = self.index.shape[1]
        for name in ("target", "weight"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (size,):
                raise InputError(f"pairs.{name} must have shape ({size},) for {size} pairs, got {tuple(value.shape)}")
        if self.weight is not None and is_validation_enabled() and not (self.weight > 0).all():
            raise InputError("pairs.weight must be positive")
        if not self.scale > 0:
            raise InputError(f"pairs.scale must be positive, got {self.scale}")
        return size


def paper_pairs(edge_index: torch.Tensor, num_nodes: int) -> Pairs:
    """The reconstruction objective of Kipf & Welling (2016), as a :class:`Pairs`.

    ``tkipf/gae`` minimizes, over all N^2 entries of the label matrix
    A' = A_train + I (training edges plus the diagonal; held-out edges count as 0),

        loss = norm * mean_ij [ -pos_weight * A'_ij log s_ij - (1 - A'_ij) log(1 - s_ij) ]
               + (1/N) mean_i KL(q(z_i) || p(z_i)),    s_ij = sigmoid(z_i . z_j),

    with M = nnz(A_train) = 2 E_train, ``pos_weight = (N^2 - M) / M`` and
    ``norm = N^2 / (2 (N^2 - M))``. That is
    (1/N^2) [ sum_ij w_ij (-log p(A'_ij | z)) + sum_i KL_i ] with
    w_ij = norm * pos_weight if A'_ij = 1 else norm. So the pair set is the dense
    adjacency (``index=None``), each A_ij site is scaled by w_ij and the whole
    program by 1/N^2: the negative ELBO of the Pyro program is the paper's loss.
    """
    check_graph(torch.empty(num_nodes, 0), edge_index)
    n2 = num_nodes * num_nodes
    adjacency = torch.zeros(num_nodes, num_nodes)
    adjacency[edge_index[0], edge_index[1]] = 1.0
    adjacency.fill_diagonal_(0.0)
    m = adjacency.sum().item()
    if m == 0:
        raise ValueError("the training graph has no edges")
    pos_weight = (n2 - m) / m
    norm = n2 / (2 * (n2 - m))
    target = adjacency.add_(torch.eye(num_nodes)).flatten()
    weight = norm * torch.where(target > 0, pos_weight, 1.0)
    return Pairs(index=None, target=target, weight=weight, scale=1.0 / n2)


@register_model("vgae")
class VGAE(PyroModule):
    """Variational graph autoencoder: N(0, I) node prior, inner-product Bernoulli, GCN guide.

    :param in_features: number F of node features.
    :param hidden: units of the first GCN layer (paper: 32).
    :param z_dim: latent dimension D (paper: 16).
    :param prefix: prefix of every site and plate name.

    Registered in :data:`~pyro_vae.models.MODELS` as a model of graphs
    (``data_kind = "graph"``): it trains on a graph data set, one full-graph step per
    epoch (the ``"graph"`` kind of :mod:`pyro_vae.training.kinds`); ``data_keys`` are the entries of
    that one batch.
    """

    max_plate_nesting = 1
    variational = True
    data_kind = "graph"
    data_keys = ("x", "edge_index", "pairs")

    @classmethod
    def build(cls, spec: DataSpec, *, z_dim: int = 16, hidden: tuple[int, ...] = (32,)) -> VGAE:
        """A model for graphs of ``spec.x_shape = (F,)`` node features, one GCN layer of ``hidden`` units."""
        return cls(spec.x_shape[0], hidden[0], z_dim)

    @staticmethod
    def check_config(config) -> None:
        """Refuse the training settings a graph model cannot use (a ``TrainConfig``): more than one
        hidden layer, and the settings of data points it ignores. An estimator or algorithm that
        cannot train a graph refuses it itself, from what the program declares: ``score-nvil``
        a program without ``x_dim`` (one datum's size, the input of its baseline b(x)), the
        wake-sleep algorithms a program whose ``data_keys`` are more than ``("x",)``."""
        if len(config.hidden) != 1:
            raise ValueError(f"a graph model has one hidden GCN layer: give one --hidden size, got {config.hidden}")
        unused = {
            "likelihood": None,
            "num_train": None,
            "num_labels": None,
            "kl_warmup": 0,
            "evals_per_decade": 0,
            "activation": "tanh",
            "init_std": None,
            "init": "torch",
        }
        given = [name for name, default in unused.items() if getattr(config, name) != default]
        if given:
            raise ValueError(
                f"a graph model does not use {given}: one full-graph step per epoch, a Bernoulli A_ij, a ReLU GCN "
                "with Glorot's initialisation (Kipf & Welling)"
            )

    def __init__(self, in_features: int, hidden: int = 32, z_dim: int = 16, prefix: str = "") -> None:
        super().__init__(name=prefix)
        COUNT.check(in_features=in_features, hidden=hidden, z_dim=z_dim)
        self.in_features, self.z_dim = in_features, z_dim
        # tkipf/gae's GCN layers have no bias; GCNConv normalizes as D^-1/2 (A + I) D^-1/2.
        GCNConv = pyg("nn").GCNConv
        self.conv_hidden = GCNConv(in_features, hidden, bias=False)
        self.conv_loc = GCNConv(hidden, z_dim, bias=False)
        if self.variational:
            self.conv_log_scale = GCNConv(hidden, z_dim, bias=False)
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))

    def site(self, name: str) -> str:
        """Full name of a sample site or plate, with this module's prefix."""
        return f"{self._pyro_name}.{name}" if self._pyro_name else name

    # --- distributions ----------------------------------------------------
    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, sigma)`` of q(z | X, A), each ``(N, D)``; sigma is ``None`` for the GAE."""
        self.check_input(x, edge_index)
        h = torch.relu(self.conv_hidden(x, edge_index))
        loc = self.conv_loc(h, edge_index)
        return loc, (self.conv_log_scale(h, edge_index).exp() if self.variational else None)

    def posterior(self, x: torch.Tensor, edge_index: torch.Tensor) -> dist.TorchDistribution:
        """q(z | X, A) = prod_i N(mu_i, diag sigma_i^2); a point mass at mu for the GAE."""
        loc, scale = self.encode(x, edge_index)
        return dist.Delta(loc).to_event(1) if scale is None else dist.Normal(loc, scale).to_event(1)

    def prior(self, num_nodes: int) -> dist.TorchDistribution:
        """p(z_i) = N(0, I_D), expanded over the node plate."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1).expand([num_nodes])

    @staticmethod
    def logits(z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """z_i . z_j for the pairs ``index`` (``None``: all N*N, row-major); batch dims kept."""
        if index is None:
            return (z @ z.transpose(-1, -2)).flatten(-2)
        return (z[..., index[0], :] * z[..., index[1], :]).sum(-1)

    # --- the probabilistic program ---------------------------------------
    @pyro_method
    def model(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        pairs: Pairs | None = None,
        total_size: int | None = None,
    ) -> torch.Tensor:
        """p(z) p(A | z) on the pairs of ``pairs``; ``None`` draws a dense adjacency. A graph is
        one datum, so ``total_size`` (the training loop's data count) scales nothing."""
        self.check_input(x, edge_index)
        pairs = pairs or Pairs()
        num_pairs = pairs.size(x.shape[0])
        with poutine.scale(scale=pairs.scale):
            # The GAE has no prior term: its objective is the likelihood alone.
            with pyro.plate(self.site("nodes"), x.shape[0], dim=-1), poutine.mask(mask=self.variational):
                z = pyro.sample(self.site("z"), self.prior(x.shape[0]))
            with (
                pyro.plate(self.site("pairs"), num_pairs, dim=-1),
                poutine.scale(scale=1.0 if pairs.weight is None else pairs.weight),
            ):
                return pyro.sample(self.site("A"), dist.Bernoulli(logits=self.logits(z, pairs.index)), obs=pairs.target)

    @pyro_method
    def guide(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        pairs: Pairs | None = None,
        total_size: int | None = None,
    ) -> torch.Tensor:
        """q(z | X, A), amortized by the GCN encoder."""
        with poutine.scale(scale=(pairs or Pairs()).scale):
            with pyro.plate(self.site("nodes"), x.shape[0], dim=-1):
                return pyro.sample(self.site("z"), self.posterior(x, edge_index))

    # --- helpers ----------------------------------------------------------
    def check_input(self, x: torch.Tensor, edge_index: torch.Tensor) -> None:
        """Raise one clear error for malformed features or edges (see :func:`check_graph`)."""
        check_graph(x, edge_index)
        if x.shape[1] != self.in_features:
            raise ValueError(f"node features have {x.shape[1]} columns, but the model was built for {self.in_features}")

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``vgae(x, edge_index)``: the reconstructed adjacency, sigmoid(mu mu^T) of shape ``(N, N)``,
        the mean of p(A | z) at z = mu, the posterior means (Kipf & Welling 2016's reconstruction);
        differentiable, as a VAE's ``vae(x)`` (:meth:`pyro_vae.models.vae.VAE.forward`)."""
        loc = self.encode(x, edge_index)[0]
        return torch.sigmoid(self.logits(loc)).view(x.shape[0], x.shape[0])

    @torch.no_grad()
    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The posterior means mu, ``(N, D)``: the node embeddings used for link prediction."""
        return self.encode(x, edge_index)[0]


@register_model("gae")
class GAE(VGAE):
    """Graph autoencoder, non-variational: point-mass guide z = mu, no prior term."""

    variational = False
