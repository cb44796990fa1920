"""Data: every dataset as float32 images in [0, 1] (N, C, H, W) and int64 labels, by registered name.

:mod:`~robench.data.datasets` holds the types, the :data:`DATASETS` registry, :func:`load_dataset`
and :func:`stratified_subset`; the loaders register beside their code, in
:mod:`~robench.data.sources` (file-backed, downloadable) and :mod:`~robench.data.offline` (digits,
synthetic); :mod:`~robench.data.readers` parses the files (IDX, CIFAR pickles, SVHN .mat).
"""

from robench.data import offline, sources  # noqa: F401  (registers the loaders)
from robench.data.datasets import (DATASETS, DatasetInfo, DataSplits, RawSplits, dataset_info, default_data_dir,
                                   load_dataset, stratified_subset)

__all__ = ["DATASETS", "DatasetInfo", "DataSplits", "RawSplits", "dataset_info", "default_data_dir", "load_dataset",
           "stratified_subset"]
