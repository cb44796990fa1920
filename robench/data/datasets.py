"""Datasets as float32 tensors in [0, 1], NCHW, with int64 labels 0..D-1.

Every dataset is registered in :data:`DATASETS` under one stable name (``mnist``,
``fashion-mnist``, ``svhn``, ``cifar10``, ``cifar100``, ``digits``, ``synthetic``) beside its
loader (:mod:`robench.data.sources`, :mod:`robench.data.offline`) and loaded with
:func:`load_dataset`. Image datasets are read offline from torchvision's directory layout under a
data directory (:func:`default_data_dir`); ``download=True`` lets torchvision fetch missing files
first. ``digits`` ships with scikit-learn and ``synthetic`` is generated, so neither ever needs a
file or the network.

Normalisation is not applied here: :class:`DatasetInfo` carries the per-channel train-set
mean and std for the model to normalise internally, so attacks work in [0, 1] pixel space.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from robench.errors import RobenchError
from robench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; ``mean``/``std`` are per channel, of the train images in [0, 1]."""

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class DataSplits:
    """Train and test split: ``x_*`` float32 (N, C, H, W) in [0, 1], ``y_*`` int64 (N,)."""

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class RawSplits(NamedTuple):
    """What a registered loader returns: numpy images, uint8 in 0..255 or float32 in [0, 1], NCHW."""

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# Entries: loader(data_dir: Path, download: bool, options: dict) -> RawSplits.
DATASETS: Registry[Callable[[Path, bool, dict[str, Any]], RawSplits]] = Registry("dataset")

DIGIT_NAMES = tuple(str(d) for d in range(10))
"""Class names of the digit datasets (MNIST, SVHN, digits)."""

PUBLISHED_INFO: dict[str, DatasetInfo] = {}
"""Published train-set statistics of file-backed datasets (filled by their loaders' module), so
:func:`dataset_info` never has to read the files."""


def default_data_dir() -> Path:
    """``$ROBENCH_DATA`` if set, else ``$XDG_CACHE_HOME/robench/data``, else ``~/.cache/robench/data``."""
    if os.environ.get("ROBENCH_DATA"):
        return Path(os.environ["ROBENCH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "robench" / "data"


def stratified_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted int64 indices of ``n`` examples drawn without replacement, class-stratified.

    Each class gets a share proportional to its frequency (largest-remainder rounding),
    and at least one example when ``n`` is at least the number of classes. The same
    ``(y, n, seed)`` always gives the same indices.
    """
    labels = np.asarray(torch.as_tensor(y).cpu()).reshape(-1)
    if n <= 0:
        raise RobenchError(f"subset size must be positive, got {n}")
    if n > len(labels):
        raise RobenchError(f"cannot take a subset of {n} from {len(labels)} examples")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / len(labels)
    quota = np.floor(exact).astype(np.int64)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() < n:  # hand out the rest by largest remainder, where a class has room
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[np.argmax(room)] += 1
    while quota.sum() > n:  # only after the at-least-one bump: take back where most over
        over = np.where(quota > 1, quota - exact, -np.inf)
        quota[np.argmax(over)] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, quota)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)).astype(np.int64))


def dataset_info(name: str, options: dict | None = None) -> DatasetInfo:
    """Facts about dataset ``name`` without reading its files (``digits``/``synthetic`` are generated)."""
    loader = DATASETS.get(name)
    options = dict(options or {})
    if name in PUBLISHED_INFO:
        check_options(name, options, {})
        return PUBLISHED_INFO[name]
    return loader(default_data_dir(), False, options).info


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    options: dict | None = None,
) -> DataSplits:
    """Load dataset ``name`` as :class:`DataSplits`, optionally a seeded stratified subset of each split."""
    loader = DATASETS.get(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    raw = loader(root, download, dict(options or {}))
    xs, ys = {}, {}
    for split, size in (("train", train_subset), ("test", test_subset)):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if size is not None:
            if size <= 0 or size > len(y):
                raise RobenchError(f"{split}_subset must be in 1..{len(y)} for {name}, got {size}")
            idx = stratified_subset(torch.from_numpy(y), size, seed).numpy()
            x, y = x[idx], y[idx]
        xs[split], ys[split] = to_unit_float(x), torch.from_numpy(np.asarray(y, dtype=np.int64))
    return DataSplits(raw.info, xs["train"], ys["train"], xs["test"], ys["test"])


def to_unit_float(x: np.ndarray) -> torch.Tensor:
    """uint8 images in 0..255 or float images in [0, 1] as a float32 tensor in [0, 1]."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def check_options(name: str, options: dict, known: dict) -> None:
    """Refuse options a dataset does not take (``known``: its option names with defaults)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = f"known: {', '.join(known)}" if known else "it takes none"
        raise RobenchError(f"unknown option(s) {', '.join(map(repr, unknown))} for dataset {name}; {allowed}")




def check_labels(name: str, raw: RawSplits) -> RawSplits:
    """``raw`` if every label is in 0..D-1, else a :class:`RobenchError` (corrupt files)."""
    for y in (raw.y_train, raw.y_test):
        if len(y) and (y.min() < 0 or y.max() >= raw.info.num_classes):
            raise RobenchError(f"{name} has labels outside 0..{raw.info.num_classes - 1}; its files are corrupt")
    return raw


def stats_info(name: str, x_train: np.ndarray, num_classes: int, class_names: tuple[str, ...]) -> DatasetInfo:
    """DatasetInfo with per-channel mean/std computed from float train images (N, C, H, W)."""
    mean = tuple(float(m) for m in x_train.mean(axis=(0, 2, 3), dtype=np.float64))
    std = tuple(float(s) for s in x_train.std(axis=(0, 2, 3), dtype=np.float64))
    return DatasetInfo(name, num_classes, x_train.shape[1], tuple(x_train.shape[2:]), mean, std, class_names)
