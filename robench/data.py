"""Datasets as float32 tensors in [0, 1], NCHW, with int64 labels 0..D-1.

Every dataset is registered in :data:`DATASETS` under one stable name (``mnist``,
``fashion-mnist``, ``svhn``, ``cifar10``, ``cifar100``, ``digits``, ``synthetic``) and
loaded with :func:`load_dataset`. Image datasets are read offline from torchvision's
directory layout under a data directory (:func:`default_data_dir`); ``download=True``
lets torchvision fetch missing files first. ``digits`` ships with scikit-learn and
``synthetic`` is generated, so neither ever needs a file or the network.

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

from robench.datafiles import IDX_STEMS, find_idx_files, read_cifar_dir, read_idx_splits, read_svhn_mat
from robench.errors import RobenchError
from robench.registry import Registry

# Where Debian's ``dataset-fashion-mnist`` package installs the four IDX .gz files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_DIGITS_SPLIT_SEED = 0  # fixed: the digits test set never depends on the user's seed
_DIGITS_TEST_SIZE = 360


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

_DIGIT_NAMES = tuple(str(d) for d in range(10))
_CIFAR100_NAMES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm".split()
)
# Published train-set statistics, so dataset_info() never has to read the files.
_STATIC_INFO = {
    info.name: info
    for info in (
        DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), _DIGIT_NAMES),
        DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), (
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
        DatasetInfo("svhn", 10, 3, (32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), _DIGIT_NAMES),
        DatasetInfo("cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
        DatasetInfo("cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                    _CIFAR100_NAMES),
    )
}


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
    if name in _STATIC_INFO:
        _check_options(name, options, {})
        return _STATIC_INFO[name]
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
        xs[split], ys[split] = _to_unit_float(x), torch.from_numpy(np.asarray(y, dtype=np.int64))
    return DataSplits(raw.info, xs["train"], ys["train"], xs["test"], ys["test"])


def _to_unit_float(x: np.ndarray) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _check_options(name: str, options: dict, known: dict) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = f"known: {', '.join(known)}" if known else "it takes none"
        raise RobenchError(f"unknown option(s) {', '.join(map(repr, unknown))} for dataset {name}; {allowed}")


def _missing(name: str, files: list[str], dirs: list[Path], layout: str, extra: str = "") -> RobenchError:
    where = " and ".join(str(d) for d in dirs)
    more = f" (and {len(files) - 1} more)" if len(files) > 1 else ""
    ways = ["--download (needs internet)", f"--data-dir DIR holding {layout}"] + ([extra] if extra else [])
    ways = " or ".join(ways) if len(ways) == 2 else ", ".join(ways[:-1]) + f", or {ways[-1]}"
    return RobenchError(f"{name} not found: looked for {files[0]}{more} in {where}; get it with {ways}")


def _download(name: str, fetch: Callable[[], object]) -> None:
    try:
        fetch()
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError
        raise RobenchError(f"downloading {name} failed: {e}") from e


def _all_files(folder: Path, names: list[str]) -> bool:
    return all((folder / n).is_file() for n in names)


def _check_labels(name: str, raw: RawSplits) -> RawSplits:
    for y in (raw.y_train, raw.y_test):
        if len(y) and (y.min() < 0 or y.max() >= raw.info.num_classes):
            raise RobenchError(f"{name} has labels outside 0..{raw.info.num_classes - 1}; its files are corrupt")
    return raw


def _load_idx_dataset(name: str, folder: str, data_dir: Path, download: bool, options: dict) -> RawSplits:
    _check_options(name, options, {})
    dirs = [data_dir / folder / "raw"] + ([DEBIAN_FASHION_MNIST_DIR] if name == "fashion-mnist" else [])
    files = next((f for f in map(find_idx_files, dirs) if f), None)
    if files is None and download:
        from torchvision import datasets

        cls = datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST
        _download(name, lambda: cls(root=str(data_dir), train=True, download=True))
        files = find_idx_files(dirs[0])
    if files is None:
        extra = "apt-get install dataset-fashion-mnist" if name == "fashion-mnist" else ""
        raise _missing(name, [f"{s}[.gz]" for s in IDX_STEMS], dirs, f"{folder}/raw/", extra)
    return _check_labels(name, RawSplits(_STATIC_INFO[name], *read_idx_splits(files)))


@DATASETS.register("mnist", "MNIST: 70,000 28x28 grey handwritten digits, 10 classes (LeCun et al. 1998)")
def load_mnist(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """MNIST (LeCun, Bottou, Bengio & Haffner 1998): 60,000 train / 10,000 test, 1x28x28, from IDX files."""
    return _load_idx_dataset("mnist", "MNIST", data_dir, download, options)


@DATASETS.register(
    "fashion-mnist", "Fashion-MNIST: 70,000 28x28 grey clothing images, 10 classes (Xiao et al. 2017)"
)
def load_fashion_mnist(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60,000 / 10,000, 1x28x28; also found in the Debian path."""
    return _load_idx_dataset("fashion-mnist", "FashionMNIST", data_dir, download, options)


@DATASETS.register("svhn", "SVHN: 99,289 32x32 colour house-number digits, 10 classes (Netzer et al. 2011)")
def load_svhn(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """SVHN cropped digits (Netzer et al. 2011): 73,257 train / 26,032 test, 3x32x32; extra split unused."""
    _check_options("svhn", options, {})
    folder = data_dir / "svhn"
    names = ["train_32x32.mat", "test_32x32.mat"]
    if download and not _all_files(folder, names):
        from torchvision.datasets import SVHN
        from torchvision.datasets.utils import download_url

        for url, filename, md5 in (SVHN.split_list["train"], SVHN.split_list["test"]):
            if not (folder / filename).is_file():
                _download("svhn", lambda: download_url(url, str(folder), filename, md5))
    if not _all_files(folder, names):
        raise _missing("svhn", names, [folder], "svhn/")
    (x_train, y_train), (x_test, y_test) = (read_svhn_mat(folder / n) for n in names)
    return _check_labels("svhn", RawSplits(_STATIC_INFO["svhn"], x_train, y_train, x_test, y_test))


# name -> (folder, train batches, test batches, label key), torchvision's layout
_CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


def _load_cifar(name: str, data_dir: Path, download: bool, options: dict) -> RawSplits:
    _check_options(name, options, {})
    folder, train, test, label_key = _CIFAR_LAYOUT[name]
    if download and not _all_files(data_dir / folder, train + test):
        # Fetch and unpack the archive only: torchvision's dataset classes would plain-pickle.load it.
        from torchvision.datasets import CIFAR10, CIFAR100
        from torchvision.datasets.utils import download_and_extract_archive

        cls = CIFAR10 if name == "cifar10" else CIFAR100
        _download(name, lambda: download_and_extract_archive(
            cls.url, str(data_dir), filename=cls.filename, md5=cls.tgz_md5))
    if not _all_files(data_dir / folder, train + test):
        raise _missing(name, train + test, [data_dir / folder], f"{folder}/")
    arrays = read_cifar_dir(data_dir / folder, train, test, label_key)
    return _check_labels(name, RawSplits(_STATIC_INFO[name], *arrays))


@DATASETS.register("cifar10", "CIFAR-10: 60,000 32x32 colour images, 10 classes (Krizhevsky 2009)")
def load_cifar10(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test, 3x32x32, from the python-version pickles."""
    return _load_cifar("cifar10", data_dir, download, options)


@DATASETS.register("cifar100", "CIFAR-100: 60,000 32x32 colour images, 100 fine classes (Krizhevsky 2009)")
def load_cifar100(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """CIFAR-100 (Krizhevsky 2009): 50,000 train / 10,000 test, 3x32x32, the 100 fine labels."""
    return _load_cifar("cifar100", data_dir, download, options)


def _stats_info(name: str, x_train: np.ndarray, num_classes: int, class_names: tuple[str, ...]) -> DatasetInfo:
    """DatasetInfo with per-channel mean/std computed from float train images (N, C, H, W)."""
    mean = tuple(float(m) for m in x_train.mean(axis=(0, 2, 3), dtype=np.float64))
    std = tuple(float(s) for s in x_train.std(axis=(0, 2, 3), dtype=np.float64))
    return DatasetInfo(name, num_classes, x_train.shape[1], tuple(x_train.shape[2:]), mean, std, class_names)


@DATASETS.register("digits", "digits: 1,797 8x8 grey handwritten digits bundled with scikit-learn, 10 classes")
def load_digits(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """scikit-learn's digits (UCI optdigits test set; Alpaydin & Kaynak 1998), values 0..16 scaled to [0, 1].

    A fixed stratified split (seed 0, independent of the user's seed): 1,437 train / 360 test.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    _check_options("digits", options, {})
    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    test = stratified_subset(torch.from_numpy(y), _DIGITS_TEST_SIZE, _DIGITS_SPLIT_SEED).numpy()
    train = np.setdiff1d(np.arange(len(y)), test)
    return RawSplits(_stats_info("digits", x[train], 10, _DIGIT_NAMES), x[train], y[train], x[test], y[test])


_SYNTHETIC_DEFAULTS = {"num_classes": 10, "channels": 1, "image_size": 8, "n_train": 512, "n_test": 256, "data_seed": 0}


def _int_option(options: dict, key: str, minimum: int) -> int:
    value = options.get(key, _SYNTHETIC_DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RobenchError(f"synthetic option {key} must be an integer >= {minimum}, got {value!r}")
    return value


@DATASETS.register("synthetic", "synthetic: tiny seeded class-separable images (prototype + noise) for tests")
def load_synthetic(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """Seeded toy data: each class a random prototype in [0.2, 0.8], samples add N(0, 0.1^2) noise, clipped.

    Options: num_classes (10), channels (1), image_size (8 or [H, W]), n_train (512), n_test (256),
    data_seed (0). Classes are balanced (sizes differ by at most one).
    """
    _check_options("synthetic", options, _SYNTHETIC_DEFAULTS)
    k, c = _int_option(options, "num_classes", 2), _int_option(options, "channels", 1)
    n_train, n_test = _int_option(options, "n_train", 1), _int_option(options, "n_test", 1)
    seed = _int_option(options, "data_seed", 0)
    size = options.get("image_size", 8)
    hw = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
    if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in hw):
        raise RobenchError(f"synthetic option image_size must be a positive integer or [H, W], got {size!r}")
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.2, 0.8, size=(k, c, *hw))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % k).astype(np.int64)
        x = prototypes[y] + rng.normal(0.0, 0.1, size=(n, c, *hw))
        return np.clip(x, 0.0, 1.0).astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = sample(n_train), sample(n_test)
    info = _stats_info("synthetic", x_train, k, tuple(f"class-{i}" for i in range(k)))
    return RawSplits(info, x_train, y_train, x_test, y_test)
