import os
from pathlib import Path

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_pyro(tmp_path, monkeypatch):
    """Every test starts with an empty param store, fixed seeds and its own data cache."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))
    yield
    pyro.clear_param_store()


@pytest.fixture
def real_data_dir() -> Path:
    """The folder of real data sets (``$PYRO_VAE_DATA``); skips when absent."""
    path = os.environ.get("PYRO_VAE_DATA")
    if not path or not (Path(path) / "MNIST" / "raw").is_dir():
        pytest.skip("real data sets not available (set PYRO_VAE_DATA)")
    return Path(path)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
