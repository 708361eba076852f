"""A user's own data as a Dataset: every accepted form, one-line refusals, files and image
folders, the fingerprint, and binarization holding for the test set too."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyro_vae.data import TEST_FRACTION, as_dataset, data_fingerprint, make_synthetic, read_data

X = torch.rand(50, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(50) % 3


@pytest.mark.parametrize(
    "form",
    [
        lambda: X,
        lambda: X.numpy(),
        lambda: {"x": X, "y": Y},
        lambda: {"train": X.numpy(), "train_labels": Y.numpy()},
        lambda: TensorDataset(X, Y),
        lambda: DataLoader(TensorDataset(X, Y), batch_size=7),
        lambda: [(x, int(y)) for x, y in zip(X, Y)],  # a plain list of pairs is not a form
    ],
    ids=["tensor", "numpy", "dict-aliases", "dict-numpy", "torch-dataset", "dataloader", "list"],
)
def test_every_form_gives_the_same_dataset(form):
    if isinstance(form(), list):
        with pytest.raises(TypeError, match="must be a tensor or numpy array"):
            as_dataset(form())
        return
    data = as_dataset(form())
    reference = as_dataset({"train": X, "train_labels": Y})
    assert data.x_shape == (16,) and data.image_shape == (1, 4, 4)
    assert len(data.test) == round(TEST_FRACTION * 50) and len(data.train) == 45
    assert torch.equal(data.train, reference.train) and torch.equal(data.test, reference.test)
    assert data.fingerprint == reference.fingerprint
    if isinstance(form(), (dict, TensorDataset, DataLoader)):
        assert torch.equal(data.train_labels, reference.train_labels) and data.num_classes == 3


def test_a_given_test_set_is_kept_and_the_fingerprint_names_the_data():
    data = as_dataset({"train": X[:40], "test": X[40:]})
    assert torch.equal(data.test, X[40:].flatten(1)) and data.test_labels is None
    assert data.fingerprint == data_fingerprint(X[:40].flatten(1), X[40:].flatten(1))
    other = as_dataset({"train": X[:40], "test": X[41:]})
    assert other.fingerprint != data.fingerprint
    assert as_dataset(X, seed=1).fingerprint != as_dataset(X).fingerprint  # another carved test set


def test_eight_bit_values_are_scaled():
    pixels = (X * 255).round().to(torch.uint8)
    data = as_dataset({"train": pixels, "test": pixels[:5]})
    assert data.train.dtype == torch.float32 and torch.equal(data.train, pixels.flatten(1).float() / 255)


@pytest.mark.parametrize(
    "data, error, match",
    [
        (X * 2, ValueError, r"train has values in \[.*, 2\]; they must lie in \[0, 1\]"),
        (torch.full((5, 3), float("nan")), ValueError, "must lie in"),
        (torch.arange(10), ValueError, r"shape \(N, \*x_shape\).*got \(10,\)"),
        (torch.ones(10, 3, dtype=torch.int64), TypeError, "has dtype torch.int64; give floats in"),
        ({"train": X, "colour": X}, ValueError, "unknown entry 'colour'"),
        ({"x": X, "train": X}, ValueError, "give it once"),
        ({"test": X}, ValueError, "no training data"),
        ({"x": X, "y": Y.float()}, ValueError, "train_labels must be integers of shape"),
        ({"x": X, "test_labels": Y}, ValueError, "test_labels were given without test data"),
        (X[:1], ValueError, "both need at least one"),
        ("images.png", TypeError, "must be a tensor or numpy array"),
    ],
)
def test_refusals_are_one_line(data, error, match):
    with pytest.raises(error, match=match) as info:
        as_dataset(data)
    assert "\n" not in str(info.value)


def test_files_npz_npy_pt(tmp_path):
    np.savez(tmp_path / "d.npz", x=X.numpy(), y=Y.numpy(), test=X[:5].numpy())
    np.save(tmp_path / "d.npy", X.numpy())
    torch.save({"train": X, "train_labels": Y}, tmp_path / "d.pt")
    npz = read_data(tmp_path / "d.npz")
    assert len(npz.train) == 50 and len(npz.test) == 5 and npz.num_classes == 3
    assert torch.equal(read_data(tmp_path / "d.npy").train, as_dataset(X).train)
    assert read_data(tmp_path / "d.pt").fingerprint == as_dataset({"x": X, "y": Y}).fingerprint
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"d.csv: data files are .npz, .npy or .pt"):
        read_data(tmp_path / "d.csv")
    np.save(tmp_path / "big.npy", X.numpy() * 3)
    with pytest.raises(ValueError, match=r"big.npy: train has values"):
        read_data(tmp_path / "big.npy")


def _write_images(folder, count, size=(8, 8), mode="L", seed=0, first=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = size[::-1] + ((3,) if mode == "RGB" else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{first + i:03d}.png")


def test_image_folders_flat_and_by_class(tmp_path):
    _write_images(tmp_path / "flat", 20)
    flat = read_data(tmp_path / "flat")
    assert flat.image_shape == (1, 8, 8) and flat.train_labels is None and len(flat.train) + len(flat.test) == 20
    pixels = flat.train * 255  # grey levels, scaled from 8 bits
    assert torch.allclose(pixels, pixels.round(), atol=1e-4) and ((flat.train > 0) & (flat.train < 1)).any()
    _write_images(tmp_path / "classes" / "cat", 6)
    _write_images(tmp_path / "classes" / "dog", 4, mode="RGB", seed=1)
    both = read_data(tmp_path / "classes", test_fraction=0.5)
    assert both.image_shape == (3, 8, 8) and both.num_classes == 2
    labels = torch.cat([both.train_labels, both.test_labels])
    assert torch.bincount(labels).tolist() == [6, 4]  # classes in name order
    _write_images(tmp_path / "mixed", 3)
    _write_images(tmp_path / "mixed", 4, size=(6, 8), seed=2, first=3)
    with pytest.raises(ValueError, match="must be one size"):
        read_data(tmp_path / "mixed")


def test_binarize_holds_for_the_test_set_of_a_copy():
    # the case of the issue: a copy of a binarized set made with binarize=False kept the
    # binarized test images (grey training, binary testing)
    grey = make_synthetic(num_train=100, num_test=50)
    grey = dataclasses.replace(grey, train=grey.train * 0.5 + 0.25, test=grey.test * 0.5 + 0.25, binarize=True)
    binary = grey.with_validation(0.2)
    assert set(binary.test.unique().tolist()) == {0.0, 1.0} and set(binary.validation.unique().tolist()) <= {0, 1}
    unbinarized = dataclasses.replace(binary, binarize=False)
    assert set(unbinarized.test.unique().tolist()) == {0.25, 0.75}
    assert set(unbinarized.validation.unique().tolist()) == {0.25, 0.75}
    (batch,) = unbinarized.test_batches(50)
    assert ((batch["x"] > 0) & (batch["x"] < 1)).all()
    again = dataclasses.replace(unbinarized, binarize=True)  # the same single draw, with the same seed
    assert torch.equal(again.test, binary.test) and torch.equal(again.validation, binary.validation)
    assert set(as_dataset(X * 0.5 + 0.25, binarize=True).test.unique().tolist()) <= {0.0, 1.0}
    assert ((as_dataset(X * 0.5 + 0.25).test > 0) & (as_dataset(X * 0.5 + 0.25).test < 1)).all()


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_grey_level_mnist_by_name(real_data_dir, name):
    from pyro_vae.data import load_dataset

    grey, binary = load_dataset(f"{name}-grey", real_data_dir), load_dataset(name, real_data_dir)
    assert grey.name == f"{name}-grey" and not grey.binarize and grey.likelihood == "bernoulli"
    assert torch.equal(grey.train, binary.train) and grey.test.shape == binary.test.shape
    assert ((grey.test > 0) & (grey.test < 1)).any() and not torch.equal(grey.test, binary.test)
    assert torch.equal(dataclasses.replace(binary, binarize=False).test, grey.test)  # the case
