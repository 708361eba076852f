"""Data sets: binarized and grey-level MNIST and FashionMNIST, Frey Face, a synthetic set, graphs
(Planetoid), and a user's own data.

One job per module:

* :mod:`~pyro_vae.data.dataset`: the :class:`Dataset` type (train/test tensors, labels);
* :mod:`~pyro_vae.data.batches`: minibatches (:class:`Batches`, :class:`MixedBatches`);
* :mod:`~pyro_vae.data.cache`: where files come from (``--data-dir``, ``$PYRO_VAE_DATA``,
  download) and the verified cache (md5, CRC-32, atomic replacement);
* :mod:`~pyro_vae.data.sources`: the loaders of each source and the :data:`DATASETS`
  registry (a loader taking the data folder);
* :mod:`~pyro_vae.data.graphs`: graphs with node features (Cora, CiteSeer, PubMed, a planted
  partition), their verified cache and the link split; registered in :data:`DATASETS` too;
* :mod:`~pyro_vae.data.user`: a user's tensors, arrays, dicts, torch data sets and loaders as a
  :class:`Dataset` (:func:`as_dataset`, the one conversion) and their fingerprint;
* :mod:`~pyro_vae.data.reading`: a user's ``.npz``, ``.npy``, ``.pt`` file or folder of images
  (:func:`read_data`).
"""

from pyro_vae.data import graphs  # noqa: E402, F401, I001  (registers the graph data sets after the others)
from pyro_vae.data.batches import UNLABELLED, Batches, MixedBatches
from pyro_vae.data.cache import (
    ENV_CACHE,
    ENV_DATA,
    CorruptDataError,
    DataCacheError,
    DatasetNotFoundError,
    cache_dir,
    data_dir,
    prepare_raw_files,
)
from pyro_vae.data.dataset import TEST_BINARIZATION_SEED, Dataset
from pyro_vae.data.reading import read_data
from pyro_vae.data.sources import (
    DATASETS,
    FREY_MD5,
    FREY_URL,
    load_dataset,
    load_frey_face,
    make_synthetic,
    read_frey_mat,
)
from pyro_vae.data.user import TEST_FRACTION, USER_DATASET, as_dataset, data_fingerprint

__all__ = [
    "CorruptDataError",
    "DATASETS",
    "DataCacheError",
    "Dataset",
    "DatasetNotFoundError",
    "Batches",
    "ENV_CACHE",
    "ENV_DATA",
    "FREY_MD5",
    "FREY_URL",
    "MixedBatches",
    "TEST_FRACTION",
    "TEST_BINARIZATION_SEED",
    "UNLABELLED",
    "USER_DATASET",
    "as_dataset",
    "cache_dir",
    "data_dir",
    "data_fingerprint",
    "load_dataset",
    "load_frey_face",
    "make_synthetic",
    "prepare_raw_files",
    "read_data",
    "read_frey_mat",
]
