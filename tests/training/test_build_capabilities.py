"""The trainer builds from what a component declares, never from its name (pyro_vae/training/build.py):
the squashed decoder of any likelihood that can squash its mean, the scheme of any registered source."""

from pathlib import Path

import pytest
from support import SMALL

from pyro_vae.models import DataSpec
from pyro_vae.models.likelihoods import LIKELIHOODS, Bernoulli
from pyro_vae.training import TrainConfig
from pyro_vae.training.build import build_program_for, with_absolute_sources


class SquashableBernoulli(Bernoulli):
    """A user's likelihood that takes ``squash_mean``, as the Gaussian does."""

    def __init__(self, x_shape: tuple[int, ...], squash_mean: bool = False) -> None:
        super().__init__(x_shape)
        self.squash_mean = squash_mean


@pytest.mark.parametrize("name, squashed", [("gaussian", True), ("squashable", True), ("bernoulli", None)])
def test_a_likelihood_that_can_squash_its_mean_is_built_squashed(monkeypatch, name, squashed):
    monkeypatch.setattr(LIKELIHOODS, "_entries", {**LIKELIHOODS._entries, "squashable": SquashableBernoulli})
    program = build_program_for(TrainConfig(**SMALL), DataSpec((6,)), name)
    assert type(program.likelihood) is LIKELIHOODS[name]
    assert getattr(program.likelihood, "squash_mean", None) is squashed


STACKED = dict(SMALL, model="m1-m2", estimator="enum", num_labels=40, labelled_per_batch=10)


@pytest.mark.parametrize(
    "source, saved",
    [("runs/m1", str(Path("runs/m1").resolve())), ("run:runs/m1", "run:runs/m1"), ("pretrained:toy", "pretrained:toy")],
)
def test_only_a_source_without_a_scheme_is_made_an_absolute_path(source, saved):
    """A bare run folder is made absolute; ``SCHEME:NAME`` of a registered scheme, ``run`` included,
    is kept as given (it was once resolved as the path ``CWD/run:runs/m1``)."""
    import pyro_vae.pretrained  # noqa: F401  (registers the scheme "pretrained")

    config = TrainConfig(**STACKED, model_options={"m1": source})
    assert with_absolute_sources(config).model_options == {"m1": saved}
