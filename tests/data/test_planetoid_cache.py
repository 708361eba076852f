"""The Planetoid cache (issue #39, item 3): PyG's processed graph is verified like the raw files
(its md5 recorded when written, checked when read, rebuilt when bad), a processed file of another
data set in the slot is never trained on, and a damaged raw file is named.

The tests write small fake Planetoid folders in PyG's raw format (the real ones: the tests
marked ``data``, with ``PYRO_VAE_DATA``)."""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from pyro_vae.data import CorruptDataError
from pyro_vae.data.cache import checksums_match
from pyro_vae.data.graphs import PROCESSED_RECORD, load_graph, raw_paths


def write_planetoid(
    root: Path, name: str, num_train: int, num_test: int, num_features: int = 6, num_classes: int = 3, seed: int = 0
) -> Path:
    """A fake Planetoid data set ``name`` in ``root/Planetoid/<name>/raw`` (PyG's format: pickled
    sparse features, one-hot labels, an adjacency dict and the test indices as text), with
    ``num_train + 500`` labelled nodes (PyG takes the 500 after the training ones for validation)
    and ``num_test`` test nodes; returns ``root``."""
    rng = np.random.default_rng(seed)
    num_all = num_train + 500
    num_nodes = num_all + num_test

    def features(rows: int):
        return scipy.sparse.csr_matrix((rng.random((rows, num_features)) < 0.3).astype(np.float32))

    def labels(rows: int):
        return np.eye(num_classes, dtype=np.int64)[rng.integers(num_classes, size=rows)]

    allx, ally = features(num_all), labels(num_all)
    parts = {
        "x": allx[:num_train],
        "tx": features(num_test),
        "allx": allx,
        "y": ally[:num_train],
        "ty": labels(num_test),
        "ally": ally,
    }
    ring = {i: [(i - 1) % num_nodes, (i + 1) % num_nodes, int(rng.integers(num_nodes))] for i in range(num_nodes)}
    raw = root / "Planetoid" / name / "raw"
    raw.mkdir(parents=True)
    for part, value in {**parts, "graph": ring}.items():
        (raw / f"ind.{name.lower()}.{part}").write_bytes(pickle.dumps(value))
    test_index = rng.permutation(np.arange(num_all, num_nodes))
    (raw / f"ind.{name.lower()}.test.index").write_text("".join(f"{i}\n" for i in test_index))
    return root


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """A data folder with fake Cora (530 nodes) and CiteSeer (540 nodes)."""
    root = write_planetoid(tmp_path / "data", "Cora", num_train=20, num_test=10, seed=1)
    return write_planetoid(root, "CiteSeer", num_train=30, num_test=10, num_features=8, seed=2)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "Planetoid"  # $PYRO_VAE_CACHE of tests/conftest.py


def _verified(cache: Path, name: str) -> bool:
    """Whether the processed graph of ``name`` matches the record written with it."""
    folder = cache / name
    files = [*raw_paths(name, folder / "raw"), folder / "processed" / "data.pt"]
    return checksums_match(folder / "processed" / PROCESSED_RECORD, files, dataset=name)


def _same_graph(a, b) -> bool:
    return a.name == b.name and torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)


def test_the_processed_graph_is_recorded_when_written(fake_data, cache):
    graph = load_graph("cora", fake_data)
    assert (graph.num_nodes, graph.num_features) == (530, 6)
    assert _verified(cache, "Cora")
    processed = cache / "Cora" / "processed" / "data.pt"
    processed.write_bytes(processed.read_bytes() + b"\0")  # still a readable zip: only the md5 tells
    assert not _verified(cache, "Cora")


@pytest.mark.parametrize("with_data_dir", [True, False])
def test_a_damaged_processed_graph_is_rebuilt_from_the_raw_files(fake_data, cache, monkeypatch, with_data_dir):
    graph = load_graph("cora", fake_data)
    processed = cache / "Cora" / "processed" / "data.pt"
    processed.write_bytes(processed.read_bytes()[:1000])  # on main: every later run failed, blaming the download
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    again = load_graph("cora", fake_data if with_data_dir else None)
    assert _same_graph(again, graph) and _verified(cache, "Cora")


@pytest.mark.parametrize("copied", [["data.pt"], ["data.pt", PROCESSED_RECORD]])
def test_a_processed_graph_of_another_data_set_is_never_trained_on(fake_data, cache, copied):
    cora, citeseer = load_graph("cora", fake_data), load_graph("citeseer", fake_data)
    for name in copied:  # CiteSeer's processed file (and its record) in Cora's slot
        shutil.copy(cache / "CiteSeer" / "processed" / name, cache / "Cora" / "processed" / name)
    again = load_graph("cora", fake_data)
    assert _same_graph(again, cora) and again.num_nodes == 530 != citeseer.num_nodes
    assert _verified(cache, "Cora")


def test_a_verified_cache_is_read_without_writing(fake_data, cache, make_read_only):
    graph = load_graph("cora", fake_data)
    for folder in (cache / "Cora" / "raw", cache / "Cora" / "processed", cache / "Cora"):
        make_read_only(folder)
    assert _same_graph(load_graph("cora", fake_data), graph)


def _truncate(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:100])


def test_a_truncated_raw_file_of_the_data_folder_is_named(fake_data):
    bad = fake_data / "Planetoid" / "Cora" / "raw" / "ind.cora.graph"
    _truncate(bad)
    with pytest.raises(CorruptDataError) as raised:  # on main: "could not be downloaded ...; missing there: []"
        load_graph("cora", fake_data)
    assert str(raised.value) == (
        f"{bad} is damaged (truncated?): PyG cannot read it (UnpicklingError: pickle data was truncated); replace it"
    )


def test_a_truncated_cached_raw_file_is_named_and_removed(fake_data, cache, monkeypatch):
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    load_graph("cora", fake_data)
    cached = cache / "Cora" / "raw" / "ind.cora.allx"
    _truncate(cached)
    shutil.rmtree(cache / "Cora" / "processed")
    with pytest.raises(CorruptDataError) as raised:
        load_graph("cora")  # no data folder: the cache as it is
    assert str(raised.value) == (
        f"the cached {cached} was damaged (truncated?): PyG cannot read it (UnpicklingError: pickle data was "
        "truncated); it is removed and the next run downloads it again, or point --data-dir or $PYRO_VAE_DATA at "
        "a folder holding Planetoid/Cora/raw/"
    )
    assert not cached.exists()
    assert load_graph("cora", fake_data).num_nodes == 530  # the data folder fills the gap


@pytest.fixture
def planetoid_dir() -> Path:
    path = os.environ.get("PYRO_VAE_DATA")
    if not path or not (Path(path) / "Planetoid" / "CiteSeer" / "raw").is_dir():
        pytest.skip("Planetoid data not available (set PYRO_VAE_DATA)")
    return Path(path)


@pytest.mark.data
def test_citeseers_processed_file_in_coras_slot_on_the_real_data(planetoid_dir, cache):
    cora = load_graph("cora", planetoid_dir)
    load_graph("citeseer", planetoid_dir)
    shutil.copy(cache / "CiteSeer" / "processed" / "data.pt", cache / "Cora" / "processed" / "data.pt")
    again = load_graph("cora", planetoid_dir)  # on main: CiteSeer's 3327 nodes, trained on silently
    assert _same_graph(again, cora) and again.num_nodes == 2708
    processed = cache / "Cora" / "processed" / "data.pt"
    processed.write_bytes(processed.read_bytes()[:1000])
    assert _same_graph(load_graph("cora", planetoid_dir), cora)
