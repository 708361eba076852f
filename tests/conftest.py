import os
import sys
from pathlib import Path

import pyro
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


@pytest.fixture
def make_read_only():
    """Make a folder read-only for the test, even for root (``chmod``, then ``chattr +i``,
    which root cannot write through); skips where neither takes effect."""
    import shutil
    import subprocess

    done = []

    def writable(folder: Path) -> bool:
        probe = folder / ".write-probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            return False
        probe.unlink()
        return True

    def make(folder: Path) -> Path:
        folder.chmod(0o555)
        done.append((folder, False))
        if writable(folder) and shutil.which("chattr"):
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
                done.append((folder, True))
        if writable(folder):
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        return folder

    yield make
    for folder, immutable in reversed(done):
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``write(name, source)``: a user's module ``name.py`` in the current directory (``tmp_path``),
    for ``pyro-vae --import name``. What it registers, ``sys.path`` and ``sys.modules`` are
    restored after the test."""
    from pyro_vae.cli import COMMANDS
    from pyro_vae.inference import ESTIMATORS
    from pyro_vae.models import MODELS

    monkeypatch.chdir(tmp_path)  # --import searches the current directory first
    monkeypatch.setattr(sys, "path", list(sys.path))
    for registry in (MODELS, ESTIMATORS, COMMANDS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_help", dict(registry._help))
    names = []

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)
