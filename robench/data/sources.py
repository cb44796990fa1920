"""The file-backed datasets: MNIST, Fashion-MNIST, SVHN, CIFAR-10 and CIFAR-100, registered by name.

Each is read offline from torchvision's directory layout under the data directory (Fashion-MNIST
also from where Debian's ``dataset-fashion-mnist`` installs it); with ``download=True`` torchvision
fetches what is missing first. When the files are missing, the error says where robench looked
and every way to get them. CIFAR's pickles are read with an unpickler that admits only numpy
arrays (:mod:`robench.data.readers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from robench.data.datasets import (DATASETS, DIGIT_NAMES, PUBLISHED_INFO, DatasetInfo, RawSplits, check_labels,
                                    check_options)
from robench.data.readers import IDX_STEMS, find_idx_files, read_cifar_dir, read_idx_splits, read_svhn_mat
from robench.errors import RobenchError

# Where Debian's ``dataset-fashion-mnist`` package installs the four IDX .gz files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

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
PUBLISHED_INFO.update({
    info.name: info
    for info in (
        DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), DIGIT_NAMES),
        DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), (
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
        DatasetInfo("svhn", 10, 3, (32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), DIGIT_NAMES),
        DatasetInfo("cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
        DatasetInfo("cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                    _CIFAR100_NAMES),
    )
})


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


def _load_idx_dataset(name: str, folder: str, data_dir: Path, download: bool, options: dict) -> RawSplits:
    check_options(name, options, {})
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
    return check_labels(name, RawSplits(PUBLISHED_INFO[name], *read_idx_splits(files)))


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
    check_options("svhn", options, {})
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
    return check_labels("svhn", RawSplits(PUBLISHED_INFO["svhn"], x_train, y_train, x_test, y_test))


# name -> (folder, train batches, test batches, label key), torchvision's layout
_CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


def _load_cifar(name: str, data_dir: Path, download: bool, options: dict) -> RawSplits:
    check_options(name, options, {})
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
    return check_labels(name, RawSplits(PUBLISHED_INFO[name], *arrays))


@DATASETS.register("cifar10", "CIFAR-10: 60,000 32x32 colour images, 10 classes (Krizhevsky 2009)")
def load_cifar10(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test, 3x32x32, from the python-version pickles."""
    return _load_cifar("cifar10", data_dir, download, options)


@DATASETS.register("cifar100", "CIFAR-100: 60,000 32x32 colour images, 100 fine classes (Krizhevsky 2009)")
def load_cifar100(data_dir: Path, download: bool, options: dict) -> RawSplits:
    """CIFAR-100 (Krizhevsky 2009): 50,000 train / 10,000 test, 3x32x32, the 100 fine labels."""
    return _load_cifar("cifar100", data_dir, download, options)
