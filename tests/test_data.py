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


def test_missing_frey_offline_names_the_file(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DatasetNotFoundError, match=r"Frey Face.*frey/frey_rawface.mat"):
        load_dataset("frey", tmp_path)


@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_images(real_data_dir, name):
    d = load_dataset(name, real_data_dir)
    assert d.train.shape == (60000, 784) and d.test.shape == (10000, 784)
    assert d.binarize and set(d.test.unique().tolist()) == {0.0, 1.0}
    assert 0.0 < d.train.mean() < 1.0 and d.train.unique().numel() > 2  # grey levels kept for re-binarizing
    again = load_dataset(name, real_data_dir)
    assert torch.equal(d.test, again.test)  # test binarization is fixed
    assert (data_module.cache_dir() / d.name.replace("fashion-mnist", "FashionMNIST").replace("mnist", "MNIST")).exists()


@pytest.mark.data
def test_real_frey_face(real_data_dir):
    d = load_dataset("frey", real_data_dir)
    assert d.train.shape == (1765, 560) and d.test.shape == (200, 560)
    assert d.image_shape == (1, 28, 20) and d.likelihood == "gaussian"
    assert 0.0 <= d.train.min() and d.train.max() <= 1.0
