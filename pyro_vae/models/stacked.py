"""Stacked M1 + M2 (Kingma, Rezende, Mohamed & Welling 2014): M2 whose data are M1's latent code.

M1 is a VAE of the images x with code z1; M2 (:class:`~pyro_vae.models.m2.M2`) is a
semi-supervised VAE of z1, with a class y and a style z2. Generative model and guide::

    y ~ Cat(1/C),  z2 ~ N(0, I),  z1 ~ p(z1 | y, z2) (M2's Gaussian decoder),
    x ~ p(x | z1) (M1's decoder)
    q(z1 | x) (M1's encoder),  q(y | z1),  q(z2 | z1, y) (M2's guide on z1)

The program is written by plugging one program into the other: the model declares z1
(site ``m1.z``) with a flat improper density and runs ``M2.model`` with z1 as M2's data
(site ``m2.x``, observed at z1; M2's latents are ``m2.y`` and ``m2.z``), which adds
log p(y) + log p(z2) + log p(z1 | y, z2); M1's decoder then scores x (``m1.x``). The log
joint is exactly log p(y, z2, z1, x). The guide draws z1 from M1's encoder and runs
``M2.guide`` on it. Both share M1's data plate ``m1.data``.

M1 is trained first, on the images alone, and is frozen here (its parameters take no
gradient), as in the paper: then the gradient of this program's ELBO is that of M2's ELBO
on draws z1 ~ q(z1 | x), since the terms log p(x | z1) - log q(z1 | x) hold no parameter of
M2. :meth:`~StackedM1M2.classify` and :meth:`~StackedM1M2.auxiliary_loss` are M2's on the means of q(z1 | x). The
flat density of z1 cannot be drawn from: the model runs against a guide, not on its own;
:meth:`~StackedM1M2.generate` draws y and z2 from the prior and decodes the mean of p(z1 | y, z2) with M1.

M2 runs inside this program on its latent z1, so it is :attr:`~pyro_vae.models.vae.VAE.nested`:
z1 may carry leading dimensions left of the batch (the K particles the library's evaluation
draws in an outer vectorized plate, vectorized training particles), while y is enumerated
(``--estimator enum``) in the dimensions left of those. The images x, the user's data, are
still checked as ``(batch, *x_shape)`` by M1.

A training config names the trained M1 by the model option ``m1`` (:attr:`~StackedM1M2.program_options`):
``m1="pretrained:NAME"`` (a shipped entry of :mod:`pyro_vae.pretrained`) or ``m1=RUN_DIR`` (a
run folder of a VAE); the training layer loads it before :meth:`~StackedM1M2.build`
(:func:`pyro_vae.training.build.load_program`), so this module imports nothing above the models.
A checkpoint of this program holds M1's weights too (``m1.*`` in its state dict).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, pyro_method

from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.models.m2 import M2
from pyro_vae.models.program import DataSpec, register_model
from pyro_vae.models.vae import VAE
from pyro_vae.validation import COUNT, InputError


@register_model("m1-m2")
class StackedM1M2(PyroModule):
    """stacked M1 + M2 (Kingma et al. 2014): M2 on the code z1 of a frozen VAE M1 (--model-option m1=...)

    :param x_shape: shape of one image.
    :param num_classes: number of classes of y.
    :param z_dim: size of M2's style z2 (paper: 50).
    :param hidden: hidden sizes of M2's networks (paper: 500).
    :param m1: the trained VAE M1 of unlabelled images, frozen (as a submodule its sites and
        plate are renamed ``m1.z``, ``m1.x``, ``m1.data``, those of M2 ``m2.*``). A training
        config names it by a string (``"pretrained:NAME"`` or a run folder), which the training
        layer loads (:attr:`program_options`). ``None``: an untrained one with ``m1_z_dim`` and
        ``m1_hidden``, for tests and for a state dict to fill.
    :param m1_z_dim: size of M1's code z1 (paper: 50) when ``m1`` is not given.
    :param m1_hidden: hidden sizes of M1 (paper: 600, 600) when ``m1`` is not given.
    :param likelihood: M1's p(x | z1) when ``m1`` is not given.

    :param alpha_scale: M2's classification weight as a multiple of N; 0.1 (the paper's
        alpha = 0.1 N) here, where M2 alone defaults to 2.3: the stacked model was not
        part of the measurement behind M2's default.

    Other keywords (``activation``, ``init_std``) go to M2 and also to a default M1.
    """

    max_plate_nesting = 1
    data_keys = ("x", "y")
    #: The options that name a trained program, which the training layer loads from a string
    #: (``pretrained:NAME`` or a run folder) before :meth:`build`: M1.
    program_options: tuple[str, ...] = ("m1",)

    def __init__(
        self,
        x_shape: int | Sequence[int],
        num_classes: int,
        z_dim: int = 50,
        hidden: Sequence[int] = (500,),
        m1: VAE | None = None,
        m1_z_dim: int = 50,
        m1_hidden: Sequence[int] = (600, 600),
        likelihood: str | Likelihood = "bernoulli",
        activation: str = "softplus",
        init_std: float | None = None,
        alpha_scale: float = 0.1,
        **m2_options,
    ) -> None:
        super().__init__()
        x_shape = (x_shape,) if isinstance(x_shape, int) else tuple(x_shape)
        if m1 is not None and tuple(m1.data_keys) != ("x",):
            raise ValueError(
                f"M1 must be a VAE of unlabelled images (data x), got a {type(m1).__name__} "
                f"of the data {list(m1.data_keys)}"
            )
        COUNT.check(m1_z_dim=m1_z_dim)
        self.m1 = m1 or VAE(x_shape, m1_z_dim, m1_hidden, activation, likelihood, init_std)
        if self.m1.x_shape != x_shape:
            raise ValueError(
                f"M1 models images of shape {self.m1.x_shape}, the data are of shape {x_shape}: "
                "give the M1 trained on this data set"
            )
        self.m1.requires_grad_(False).train(False)
        self.m2 = M2(
            self.m1.z_dim,
            num_classes,
            z_dim,
            hidden,
            activation,
            init_std,
            likelihood="gaussian",
            data_plate_name=self.m1.data_plate_name,
            alpha_scale=alpha_scale,
            **m2_options,
        )
        self.m2.nested = True  # its data z1 are this program's latents: particles and enumeration may lead
        self.num_classes = num_classes
        self.x_shape = self.m1.x_shape

    def train(self, mode: bool = True) -> StackedM1M2:
        """Set M2's training mode; the frozen M1 stays in evaluation mode."""
        super().train(mode)
        self.m1.train(False)
        return self

    @classmethod
    def build(cls, spec: DataSpec, **options) -> StackedM1M2:
        """An instance for labelled data ``spec``."""
        if spec.num_classes is None:
            raise ValueError("stacked M1 + M2 needs a labelled data set")
        return cls(spec.x_shape, spec.num_classes, **options)

    @staticmethod
    def check_config(config) -> None:
        """Refuse a training config (a ``TrainConfig``) that does not name the trained M1: a frozen
        untrained M1 would give M2 a random code to learn from."""
        if not isinstance(config.model_options.get("m1"), str):
            raise ValueError(
                "stacked M1 + M2 trains M2 on the code of a trained VAE M1: name it with --model-option "
                "m1=pretrained:NAME (e.g. m1=pretrained:mnist-vae-z20-e10) or m1=RUN_DIR (a run folder of a VAE)"
            )

    @property
    def data_plate_name(self) -> str:
        """The data plate, M1's, which M2 shares."""
        return self.m1.data_plate_name

    @property
    def z_dim(self) -> int:
        return self.m2.z_dim

    @property
    def prior_loc(self) -> torch.Tensor:
        """The mean of p(z2) (M2's): where the program's tensors live."""
        return self.m2.prior_loc

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The means of M1's q(z1 | x), the data of M2."""
        return self.m1.encode(x)[0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """M2's most probable class under q(y | z1) at the mean code z1 of each image."""
        return self.m2.classify(self.code(x))

    def auxiliary_loss(
        self, *, x: torch.Tensor, y: torch.Tensor | None = None, total_size: int | None = None
    ) -> torch.Tensor | None:
        """M2's classification term alpha * E[-log q(y | z1)] at the mean codes z1 of the images."""
        return self.m2.auxiliary_loss(x=self.code(x), y=y, total_size=total_size)

    # --- using the program (the VAE's helpers, for figures) -------------------
    @torch.no_grad()
    def embed(self, x: torch.Tensor, site: str = "z", **context) -> torch.Tensor:
        """M2's posterior mean of its latent ``site`` (the style z2) at the mean code z1 of each image."""
        return self.m2.embed(self.code(x), site, **context)

    def forward(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """``program(x)``: the reconstruction of ``x``, M1's ``m1(x)``, the mean of p(x | z1) at
        the mean of q(z1 | x): x depends on y and z2 only through z1, so labels ``y`` change
        nothing (they are accepted, as every program's data)."""
        return self.m1(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, **context) -> torch.Tensor:
        """Mean of p(x | z1) at the mean of q(z1 | x): ``program(x)`` without gradients."""
        return self(x, **context)

    @torch.no_grad()
    def generate(self, num_generated: int, latents: dict[str, torch.Tensor] | None = None, **context) -> torch.Tensor:
        """Means of p(x | z1) at z1 the mean of p(z1 | y, z2), y and z2 drawn from the prior
        (or given: ``y=`` labels, ``latents={"z": z2}``), as M2's ``generate`` gives z1."""
        return self.m1.decode(self.m2.generate(num_generated, latents, **context)).mean

    # --- the probabilistic program ---------------------------------------
    @pyro_method
    def model(self, x=None, *, y=None, num_generated=None, total_size=None) -> torch.Tensor:
        """p(y) p(z2) p(z1 | y, z2) p(x | z1), z1 declared flat and scored by M2's model."""
        if x is None:
            raise InputError(
                "stacked M1 + M2 scores data against its guide: call model(x) with a batch x "
                "(generate(n) draws new images)"
            )
        batch_size = self.m1.batch_size(x, None, {})
        with self.m1.data_plate(batch_size, total_size):
            flat = dist.ImproperUniform(constraints.real, (batch_size,), (self.m1.z_dim,))
            z1 = pyro.sample(self.m1.site("z"), flat)
            self.m2.model(z1, y=y, total_size=total_size)
            return pyro.sample(self.m1.site("x"), self.m1.decode(z1), obs=x)

    @pyro_method
    def guide(self, x=None, *, y=None, num_generated=None, total_size=None) -> torch.Tensor:
        """q(z1 | x) of M1, then M2's q(y | z1) q(z2 | z1, y)."""
        if x is None:
            raise InputError("the guide needs data: call guide(x) with a batch x")
        with self.m1.data_plate(self.m1.batch_size(x, None, {}), total_size):
            z1 = pyro.sample(self.m1.site("z"), self.m1.posterior(x))
            return self.m2.guide(z1, y=y, total_size=total_size)
