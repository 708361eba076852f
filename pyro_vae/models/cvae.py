"""The conditional VAE (Sohn et al. 2015): a VAE of x given its label y.

Generative model and guide, with y a class label and onehot(y) its one-hot code::

    z ~ p(z) = N(0, I)
    x ~ p(x | z, y) = likelihood(decoder([z, onehot(y)]))
    q(z | x, y) = N(mu([x, onehot(y)]), diag sigma^2([x, onehot(y)]))

Only the hooks differ from :class:`~pyro_vae.models.vae.VAE`: the batch
carries ``y`` (``data_keys = ("x", "y")``), so ``log p(x|y)`` is what
evaluation reports, and samples are drawn for chosen classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pyro_vae.models.likelihoods import Likelihood, make_likelihood
from pyro_vae.models.nets import MLP, GaussianEncoder
from pyro_vae.models.program import DataSpec, register_model
from pyro_vae.models.vae import VAE
from pyro_vae.validation import InputError


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    """Raise a clear error unless ``y`` holds integer labels in ``[0, num_classes)``."""
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels y must be integers, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InputError(f"labels y must lie in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]")


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot codes of integer labels, with a clear error for labels out of range."""
    check_labels(y, num_classes)
    return F.one_hot(y, num_classes).float()


@register_model("cvae")
class CVAE(VAE):
    """conditional VAE (Sohn et al. 2015): p(z) p(x|z,y), q(z|x,y)

    :param num_classes: number of label values.

    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    data_keys = ("x", "y")
    #: Whether a datum may come without its label (a latent y, as M2's): ``False`` here, where
    #: every datum must carry one in [0, num_classes).
    partially_labelled: bool = False

    def __init__(
        self,
        x_shape: int | Sequence[int],
        num_classes: int,
        z_dim: int = 20,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
        likelihood: str | Likelihood = "bernoulli",
        init_std: float | None = None,
        prefix: str = "",
        data_plate_name: str | None = None,
    ) -> None:
        x_shape = (x_shape,) if isinstance(x_shape, int) else tuple(x_shape)
        if isinstance(likelihood, str):
            likelihood = make_likelihood(likelihood, x_shape)
        x_dim = likelihood.x_dim
        super().__init__(
            x_shape,
            z_dim,
            hidden,
            activation,
            likelihood,
            init_std,
            prefix,
            encoder=GaussianEncoder(x_dim + num_classes, z_dim, hidden, activation, init_std),
            decoder=MLP(z_dim + num_classes, tuple(reversed(hidden)), likelihood.num_params, activation, init_std),
            data_plate_name=data_plate_name,
        )
        self.num_classes = num_classes

    @classmethod
    def build(cls, spec: DataSpec, **options) -> CVAE:
        if spec.num_classes is None:
            raise ValueError("the conditional VAE needs a labelled data set")
        return cls(spec.x_shape, spec.num_classes, **options)

    # y is required where VAE takes any context: a conditional program narrows VAE's signature (#43 item 4)
    def posterior(self, x: torch.Tensor, *, y: torch.Tensor, **context) -> dist.TorchDistribution:  # type: ignore[override]
        """q(z|x,y)."""
        loc, scale = self.encoder(self.flatten(x), one_hot(y, self.num_classes))
        return dist.Normal(loc, scale).to_event(1)

    def decode(self, z: torch.Tensor, *, y: torch.Tensor, **context) -> dist.TorchDistribution:  # type: ignore[override]  # as posterior
        """p(x|z,y)."""
        return self.likelihood(cast(MLP, self.decoder).run(z, one_hot(y, self.num_classes)))

    def batch_size(self, x: torch.Tensor | None, num_generated: int | None, context: dict) -> int:
        """The number of data, after the labels are checked: every datum's in [0, num_classes), or
        with :attr:`partially_labelled` none at all or -1 for an unlabelled datum."""
        y = context.get("y")
        if y is None and not self.partially_labelled:
            raise InputError(f"{type(self).__name__} needs the labels y of its data (y=...)")
        if torch.is_tensor(y):
            self.check_data_labels(y)
        return super().batch_size(x, num_generated, context)

    def check_data_labels(self, y: torch.Tensor) -> None:
        """Raise a clear error unless ``y`` holds integer labels in [0, num_classes) (or -1, unlabelled,
        where :attr:`partially_labelled`)."""
        check_labels(y.clamp_min(0) if self.partially_labelled else y, self.num_classes)
        if self.partially_labelled and y.numel() and int(y.min()) < -1:
            raise InputError(f"labels y must be -1 (unlabelled) or in [0, {self.num_classes}), got {int(y.min())}")
