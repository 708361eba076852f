import pytest
import torch

import pyro_vae.data as data_module
from pyro_vae.data import Batches, DatasetNotFoundError, load_dataset, make_synthetic


def test_synthetic_is_deterministic_and_binary():
    a, b = make_synthetic(), make_synthetic()
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    assert a.train.shape == (2000, 64) and a.test.shape == (500, 64)
    assert set(a.train.unique().tolist()) == {0.0, 1.0}
    assert set(a.train_labels.unique().tolist()) == {0, 1, 2, 3}


def test_batches_shuffle_drop_last_and_binarize_afresh():
    grey = torch.full((250, 3), 0.5)
    g = torch.Generator().manual_seed(0)
    batches = Batches(grey, 100, generator=g, binarize=True)
    first, second = [b["x"] for b in batches], [b["x"] for b in batches]
    assert len(batches) == 2 and [x.shape for x in first] == [(100, 3), (100, 3)]
    assert set(torch.cat(first).unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first[0], second[0])  # a fresh Bernoulli draw each pass
    assert abs(torch.cat(first + second).mean().item() - 0.5) < 0.05
    ordered = Batches(torch.arange(250.0).unsqueeze(1), 100)
    assert [len(b["x"]) for b in ordered] == [100, 100, 50]
    assert torch.equal(torch.cat([b["x"] for b in ordered]).squeeze(1), torch.arange(250.0))


def test_batches_carry_labels_with_their_data():
    x = torch.arange(250.0).unsqueeze(1)
    batches = Batches(x, 100, generator=torch.Generator().manual_seed(1), labels=torch.arange(250) * 10)
    for batch in batches:
        assert set(batch) == {"x", "y"}
        assert torch.equal(batch["y"], batch["x"].squeeze(1).long() * 10)


def test_semi_supervised_split_is_balanced_and_fixed():
    data = make_synthetic()
    semi = data.with_labels(40, seed=3)
    kept = semi.train_labels[semi.train_labels >= 0]
    assert len(kept) == 40 and torch.bincount(kept).tolist() == [10, 10, 10, 10]
    assert (semi.train_labels == -1).sum() == len(data.train) - 40
    same = semi.train_labels >= 0
    assert torch.equal(semi.train_labels[same], data.train_labels[same])
    assert torch.equal(data.with_labels(40, seed=3).train_labels, semi.train_labels)
    assert not torch.equal(data.with_labels(40, seed=4).train_labels, semi.train_labels)
    with pytest.raises(ValueError, match="multiple of the 4 classes"):
        data.with_labels(42)


def test_validation_split_holds_a_seeded_random_part_out_with_its_labels():
    data = make_synthetic()
    n = 100
    ids = torch.arange(n, dtype=torch.float32).unsqueeze(1) / n  # each point names itself
    data = type(data)("ids", ids, ids[:5], torch.arange(n) % 4, None, (1, 1, 1), "bernoulli")
    split = data.with_validation(0.25, seed=3)
    assert len(split.validation) == 25 and len(split.train) == 75
    names = torch.cat([split.train, split.validation]).squeeze(1).mul(n).round().long()
    assert sorted(names.tolist()) == list(range(n))  # every point in exactly one part
    assert torch.equal(torch.cat([split.train_labels, split.validation_labels]), names % 4)  # with its label
    assert names[:75].diff().gt(0).all()  # the training points keep their order
    assert torch.equal(data.with_validation(0.25, seed=3).validation, split.validation)
    assert not torch.equal(data.with_validation(0.25, seed=4).validation, split.validation)
    (batch,) = split.validation_batches(25, keys=("x", "y"))
    assert torch.equal(batch["x"], split.validation) and torch.equal(batch["y"], split.validation_labels)


def test_grey_validation_images_are_binarized_once():
    data = make_synthetic()
    grey = type(data)(
        "grey", data.train * 0.5 + 0.25, data.test, None, None, data.image_shape, "bernoulli", binarize=True
    )
    split = grey.with_validation(0.5, seed=0)
    assert set(split.validation.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(grey.with_validation(0.5, seed=0).validation, split.validation)


@pytest.mark.parametrize("fraction, match", [(0.0, "must lie in \\(0, 1\\)"), (1e-9, "leaves 0 for validation")])
def test_validation_fraction_errors(fraction, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic().with_validation(fraction)


def test_batches_bad_sizes():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Batches(torch.zeros(5, 2), 0)
    with pytest.raises(ValueError, match="batch_size=10 exceeds the 5 training points"):
        Batches(torch.zeros(5, 2), 10, generator=torch.Generator())


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_missing_mnist_offline_names_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_mnist, "download_url", offline, raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"MNIST is not on disk.*train-images-idx3-ubyte.gz.*MNIST/raw"):
        load_dataset("mnist", tmp_path / "empty")


def test_a_failed_download_is_one_line(monkeypatch):
    import urllib.error

    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as raised:  # on main: torchvision's message, five lines
        load_dataset("mnist")
    assert str(raised.value).startswith(
        "MNIST is not on disk and could not be downloaded (RuntimeError: Error downloading train-images-idx3-ubyte.gz: "
        "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got: <urlopen error [Errno -2] Name or service not "
        "known> Tried "
    )
    assert len(str(raised.value).splitlines()) == 1


def test_missing_frey_offline_names_the_file(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DatasetNotFoundError, match=r"Frey Face.*frey/frey_rawface.mat"):
        load_dataset("frey", tmp_path)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_images(real_data_dir, name):
    d = load_dataset(name, real_data_dir)
    assert d.train.shape == (60000, 784) and d.test.shape == (10000, 784)
    assert d.binarize and set(d.test.unique().tolist()) == {0.0, 1.0}
    assert 0.0 < d.train.mean() < 1.0 and d.train.unique().numel() > 2  # grey levels kept for re-binarizing
    again = load_dataset(name, real_data_dir)
    assert torch.equal(d.test, again.test)  # test binarization is fixed
    assert (
        data_module.cache_dir() / d.name.replace("fashion-mnist", "FashionMNIST").replace("mnist", "MNIST")
    ).exists()


@pytest.mark.data
def test_real_frey_face(real_data_dir):
    d = load_dataset("frey", real_data_dir)
    assert d.train.shape == (1765, 560) and d.test.shape == (200, 560)
    assert d.image_shape == (1, 28, 20) and d.likelihood == "gaussian"
    assert 0.0 <= d.train.min() and d.train.max() <= 1.0


# --- the data cache (issue #13, item 1) -----------------------------------------------------
import gzip  # noqa: E402
import hashlib  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402

from pyro_vae.data import CorruptDataError, DataCacheError  # noqa: E402

FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _idx(array: np.ndarray) -> bytes:
    """An IDX (ubyte) file as MNIST ships it: magic 0x08, dims, big-endian sizes, pixels."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A small data folder in torchvision's layout whose md5s torchvision is told to expect,
    with the network cut off, so every load must come from disk."""
    import torchvision.datasets as tv
    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_mnist, "download_url", offline, raising=False)
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    for name, folder in FOLDERS.items():
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        files = {
            "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
            "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10),
        }
        resources = []
        for stem, array in files.items():
            blob = gzip.compress(_idx(array), mtime=0)
            (raw / f"{stem}.gz").write_bytes(blob)
            resources.append((f"{stem}.gz", hashlib.md5(blob).hexdigest()))
        monkeypatch.setattr(getattr(tv, folder), "resources", resources)
    return root


def _raw_cache(name: str):
    return data_module.cache_dir() / FOLDERS[name] / "raw"


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    # an interrupted first run: the copy cut short, nothing unpacked yet
    "truncated gz": lambda raw: (
        _truncate(raw / "train-images-idx3-ubyte.gz"),
        (raw / "train-images-idx3-ubyte").unlink(),
    ),
    "empty gz": lambda raw: (
        (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b""),
        (raw / "t10k-labels-idx1-ubyte").unlink(),
    ),
    "truncated unpacked": lambda raw: _truncate(raw / "train-images-idx3-ubyte"),
    "flipped byte in unpacked": lambda raw: _flip(raw / "t10k-images-idx3-ubyte"),
    "unpacked missing": lambda raw: (raw / "train-labels-idx1-ubyte").unlink(),
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_poisoned_cache_is_repaired_from_the_data_dir(fake_source, name, damage):
    first = load_dataset(name, fake_source)
    DAMAGE[damage](_raw_cache(name))
    again = load_dataset(name, fake_source)
    assert torch.equal(first.train, again.train) and torch.equal(first.test_labels, again.test_labels)
    assert torch.equal(first.test, again.test)
    import torchvision.datasets as tv

    for file, md5 in getattr(tv, FOLDERS[name]).resources:
        assert hashlib.md5((_raw_cache(name) / file).read_bytes()).hexdigest() == md5
    assert not [p.name for p in _raw_cache(name).iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "bad_root, match",
    [
        ("{tmp}/no-such-folder", r"MNIST is not on disk: the data folder .*no-such-folder.* does not exist"),
        ("{tmp}/empty", r"MNIST is not on disk: .*empty/MNIST/raw lacks train-images-idx3-ubyte.gz"),
        ("/etc", r"MNIST is not on disk: /etc/MNIST/raw lacks"),
    ],
)
def test_data_dir_is_used_even_when_the_cache_is_full(fake_source, tmp_path, bad_root, match):
    load_dataset("mnist", fake_source)  # fills the cache
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=match):
        load_dataset("mnist", bad_root.replace("{tmp}", str(tmp_path)))


def test_corrupt_data_dir_file_is_named(fake_source):
    load_dataset("mnist", fake_source)
    _truncate(fake_source / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(
        CorruptDataError, match=r"t10k-images-idx3-ubyte.gz is corrupt: its md5 is \w+, torchvision's is"
    ):
        load_dataset("mnist", fake_source)


def test_read_only_cache(fake_source, tmp_path, monkeypatch, make_read_only):
    full = tmp_path / "full-cache"
    monkeypatch.setenv("PYRO_VAE_CACHE", str(full))
    expected = load_dataset("mnist", fake_source)
    make_read_only(full / "MNIST" / "raw")  # a valid read-only cache is fine
    assert torch.equal(load_dataset("mnist", fake_source).train, expected.train)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("PYRO_VAE_CACHE", str(make_read_only(empty)))
    with pytest.raises(DataCacheError, match=r"data cache .*empty-cache is not writable.*set \$PYRO_VAE_CACHE"):
        load_dataset("mnist", fake_source)


def _save_mat(path, **variables):
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)


FREY_DAMAGE = {
    "garbage": (
        lambda p: (p.parent.mkdir(parents=True), p.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 200)),
        r"is not a readable MATLAB file",
    ),
    "empty": (lambda p: (p.parent.mkdir(parents=True), p.write_bytes(b"")), r"is not a readable MATLAB file"),
    "wrong variable": (
        lambda p: _save_mat(p, faces=np.zeros((560, 300), np.uint8)),
        r"has no variable 'ff' \(it holds \['faces'\]\)",
    ),
    "wrong shape": (
        lambda p: _save_mat(p, ff=np.zeros((28, 20), np.uint8)),
        r"'ff' has shape \(28, 20\); expected 560 x N",
    ),
    "too few faces": (lambda p: _save_mat(p, ff=np.zeros((560, 150), np.uint8)), r"holds 150 faces, too few"),
}


@pytest.mark.parametrize("damage", sorted(FREY_DAMAGE))
def test_bad_frey_file_is_one_clear_error(tmp_path, damage):
    write, match = FREY_DAMAGE[damage]
    write(tmp_path / "frey" / "frey_rawface.mat")
    with pytest.raises(CorruptDataError, match=match):
        load_dataset("frey", tmp_path)
