"""The M2 semi-supervised VAE (Kingma, Rezende, Mohamed & Welling 2014).

Generative model and guide, y a class label (latent when not given)::

    y ~ Cat(1/C),  z ~ N(0, I),  x ~ p(x | y, z) = likelihood(decoder([z, onehot(y)]))
    q(y | x) = Cat(classifier(x)),  q(z | x, y) = N(mu([x, onehot(y)]), diag sigma^2(...))

A batch carries ``y`` with ``-1`` for an unlabelled datum (see
:meth:`pyro_vae.data.Dataset.with_labels`): labelled data observe y, and
for the others y is a latent, sampled from q(y|x) or, with ``--estimator
enum``, summed out exactly (``TraceEnum_ELBO``). In one batch both kinds mix:
the model observes y with ``obs_mask`` (Pyro's sites ``y_observed`` and
``y_unobserved``). Evaluation sums y out exactly, so it reports log p(x)
when y is not given and log p(x, y) when it is.

The classification term of the paper's objective (Kingma et al. 2014, eq. 9),

    J^alpha = J + alpha * E_{p~_l(x, y)}[-log q(y|x)],   alpha = 0.1 * N,

where J is the bound summed over all N training data (labelled and not) and
p~_l the empirical distribution of the labelled data, is
:meth:`M2.auxiliary_loss`, which the AEVB algorithm adds to its loss; the
expectation is estimated by the mean over the labelled data of the minibatch.
Without it q(y|x) would learn only from the unlabelled data's bound.

The default weight is alpha = 2.3 N (``alpha_scale=2.3``), not the paper's 0.1 N:
it is the weight Pyro's example ``examples/vae/ss_vae_M2.py`` gives the term with
3000 labels (``-alm 46``: 46 per labelled image, 46 * 3000 = 2.3 * 60,000), and in
side-by-side runs (docs/results.md, "M2 against Pyro's example") it is what brings
the test error of q(y|x) at equal epochs to or below the example's, at 100 and at
3000 labels. ``alpha_scale=0.1`` gives the paper's weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import pyro_method

from pyro_vae.models.cvae import CVAE
from pyro_vae.models.nets import MLP
from pyro_vae.models.program import register_model
from pyro_vae.validation import InputError


@register_model("m2")
class M2(CVAE):
    """M2 semi-supervised VAE (Kingma et al. 2014): y ~ Cat, z ~ N(0, I), p(x|y,z); q(y|x) q(z|x,y)

    :param alpha_scale: the classification weight alpha as a multiple of N, the number
        of training data (default 2.3, the weight of Pyro's example with 3000 labels;
        the paper's alpha = 0.1 N is 0.1); see :meth:`auxiliary_loss`.

    Other parameters as :class:`~pyro_vae.models.cvae.CVAE`; the classifier q(y|x)
    has the encoder's hidden sizes.
    """

    partially_labelled = True  # -1 marks an unlabelled datum, whose y is a latent

    def __init__(
        self,
        x_shape: int | Sequence[int],
        num_classes: int,
        z_dim: int = 50,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
        init_std: float | None = None,
        alpha_scale: float = 2.3,
        **kwargs,
    ) -> None:
        super().__init__(x_shape, num_classes, z_dim, hidden, activation, init_std=init_std, **kwargs)
        if not alpha_scale >= 0:
            raise ValueError(f"alpha_scale must be >= 0, got {alpha_scale}")
        self.alpha_scale = float(alpha_scale)
        self.classifier = MLP(self.x_dim, hidden, num_classes, activation, init_std)
        self.register_buffer("class_logits", torch.zeros(num_classes))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y|x), one per datum."""
        return self.classifier(self.flatten(x)).argmax(-1)

    # M2's programs take y only, where VAE's take any context: M2 narrows VAE's signatures (#43 item 4)
    def forward(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """``m2(x)`` or ``m2(x, y=y)``: the reconstruction of ``x``, the mean of p(x | y, z) at z
        the mean of q(z | x, y), with y the given label and, where none is given (``y=None``, or
        -1), the most probable class of q(y|x) (:meth:`classify`); see :meth:`VAE.forward
        <pyro_vae.models.vae.VAE.forward>`."""
        self.batch_size(x, None, {} if y is None else {"y": y})  # one clear error for a bad x or y
        guess = self.classify(x)
        return super().forward(x, y=guess if y is None else torch.where(y >= 0, y, guess))

    def auxiliary_loss(
        self, *, x: torch.Tensor, y: torch.Tensor | None = None, total_size: int | None = None
    ) -> torch.Tensor | None:
        """alpha * E_{p~_l}[-log q(y|x)], the classification term of the paper's eq. 9.

        alpha = ``alpha_scale`` * N, with N the number of training data the
        minibatch stands for, labelled and unlabelled together (``total_size``,
        the same N as the bound's N/M scaling; the batch size without it). The
        expectation over the labelled data is estimated by the mean of
        -log q(y_i|x_i) over the labelled data of the batch; ``None`` when the
        batch holds none (nothing to add).
        """
        labelled = self._labelled(y)
        if y is None or labelled is None or not bool(labelled.any()):  # y is None: labelled is None too
            return None
        n = x.shape[0] if total_size is None else total_size
        logits = self.classifier(self.flatten(x[labelled]))
        return self.alpha_scale * n * F.cross_entropy(logits, y[labelled])

    def _labelled(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Which data carry their label (-1: unlabelled), or ``None`` without labels."""
        if y is None:
            return None
        self.check_data_labels(y)
        return y >= 0

    @pyro_method
    def model(self, x=None, *, y=None, num_generated=None, total_size=None) -> torch.Tensor:  # type: ignore[override]  # as forward
        """p(y) p(z) p(x|y,z); y observed where given (y >= 0)."""
        context = {} if y is None else {"y": y}
        batch_size = self.batch_size(x, num_generated, context)
        labelled = self._labelled(y)
        prior_y = dist.Categorical(logits=self.class_logits)
        with self.data_plate(batch_size, total_size):
            if labelled is None:
                y = pyro.sample(self.site("y"), prior_y)
            elif bool(labelled.all()):
                y = pyro.sample(self.site("y"), prior_y, obs=y)
            else:
                y = pyro.sample(self.site("y"), prior_y, obs=y.clamp_min(0), obs_mask=labelled)  # type: ignore[arg-type]  # Pyro annotates the legacy BoolTensor
            z = pyro.sample(self.site("z"), self.prior())
            return pyro.sample(self.site("x"), self.decode(z, y=y), obs=x)

    @pyro_method
    def guide(self, x=None, *, y=None, num_generated=None, total_size=None) -> torch.Tensor:  # type: ignore[override]  # as forward
        """q(y|x) for the unlabelled data, then q(z|x,y)."""
        if x is None:
            raise InputError("the guide needs data: call guide(x) with a batch x")
        batch_size = self.batch_size(x, None, {} if y is None else {"y": y})
        labelled = self._labelled(y)
        with self.data_plate(batch_size, total_size):
            if labelled is None or not bool(labelled.all()):
                q_y = dist.Categorical(logits=self.classifier(self.flatten(x)))
                name = self.site("y") if labelled is None else self.site("y_unobserved")
                drawn = pyro.sample(name, q_y if labelled is None else q_y.mask(~labelled))
                y = drawn if labelled is None else torch.where(labelled, y.clamp_min(0), drawn)
            return pyro.sample(self.site("z"), self.posterior(x, y=y))
