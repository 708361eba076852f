"""Fixtures of the pretrained tests: a machine without any data set, and log p(x) with fixed draws."""

import contextlib

import pyro
import pytest

from pyro_vae import evaluate
from pyro_vae.data import DATASETS, ENV_CACHE, ENV_DATA


@pytest.fixture
def without_data(tmp_path, monkeypatch):
    """A context in which no data set is on the machine: empty data and cache folders
    (``$PYRO_VAE_DATA``, ``$PYRO_VAE_CACHE``) and every registered data set loader raises. It
    yields the cache folder, which a test can check stays empty."""

    def refuse(root):
        raise AssertionError("a data set loader was called")

    @contextlib.contextmanager
    def context():
        with monkeypatch.context() as patch:
            for name in ("no-data", "no-cache"):
                (tmp_path / name).mkdir(exist_ok=True)
            patch.setenv(ENV_DATA, str(tmp_path / "no-data"))
            patch.setenv(ENV_CACHE, str(tmp_path / "no-cache"))
            patch.setattr(DATASETS, "_entries", {name: refuse for name in DATASETS})
            yield tmp_path / "no-cache"

    return context


@pytest.fixture
def no_data(without_data):
    """The whole test without any data set (:func:`without_data`); the cache folder."""
    with without_data() as cache:
        yield cache


@pytest.fixture
def log_px_of():
    """``log_px_of(program, batches)``: the importance-sampled log p(x) per datum (K = 20) of
    ``program`` on ``batches``, with Pyro's RNG seeded the same for every call."""

    def estimate(program, batches) -> float:
        pyro.set_rng_seed(3)
        with pyro.get_param_store().scope():
            return evaluate(program, batches, num_samples=20).log_px

    return estimate
