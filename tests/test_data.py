"""Tests for robench.data (datasets, sources, offline, readers): no downloads, no network, tiny files in tmp_path."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import robench.data.sources as data
from robench.data import (DATASETS, DataSplits, dataset_info, default_data_dir, load_dataset, offline,
                          stratified_subset)
from robench.data.readers import NumpyUnpickler, load_numpy_pickle, read_idx
from robench.errors import RobenchError

PAPER_DATASETS = ["mnist", "fashion-mnist", "svhn", "cifar10", "cifar100"]
IDX_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


# ---------------------------------------------------------------- helpers

def write_idx(path: Path, array: np.ndarray, big_endian_dtype: str | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in .gz)."""
    dtype = np.dtype(big_endian_dtype or array.dtype)
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_fake_idx_dataset(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0):
    """Four IDX files like MNIST's; returns the uint8 arrays written."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    ]
    for stem, a in zip(IDX_STEMS, arrays):
        write_idx(folder / (stem + (".gz" if gz else "")), a)
    return arrays


def write_fake_cifar(root: Path, name: str, per_batch: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny cifar-10-batches-py/ or cifar-100-python/ directory of protocol-2 pickles like the real ones."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        folder, key, k = root / "cifar-10-batches-py", b"labels", 10
    else:
        folder, files, key, k = root / "cifar-100-python", ["train", "test"], b"fine_labels", 100
    folder.mkdir(parents=True)
    written = {}
    for f in files:
        flat = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, k, per_batch)]
        with open(folder / f, "wb") as fh:
            pickle.dump({b"batch_label": b"fake", key: labels, b"data": flat}, fh, protocol=2)
        written[f] = flat
        written[f + ":labels"] = np.array(labels)
    return written


class Evil:
    """Pickles to a call of os.system; must never be loaded by the restricted unpickler."""

    def __reduce__(self):
        return (os.system, ("echo robench-test-should-never-run",))


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    return tmp_path / "no-debian"


# ---------------------------------------------------------------- registry and info

def test_registry_names_and_descriptions():
    assert DATASETS.names() == sorted(PAPER_DATASETS + ["digits", "synthetic"])
    for entry in DATASETS.entries():
        assert entry.description and "\n" not in entry.description


def test_unknown_dataset_suggests_close_name():
    with pytest.raises(RobenchError, match=r"unknown dataset 'fashion_mnist' \(did you mean 'fashion-mnist'\?\)"):
        load_dataset("fashion_mnist")
    with pytest.raises(RobenchError, match="did you mean 'cifar10'"):
        dataset_info("cifar-10")


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_info_is_consistent(name):
    info = dataset_info(name)
    assert info.name == name
    assert len(info.class_names) == info.num_classes == len(set(info.class_names))
    assert len(info.mean) == len(info.std) == info.channels
    assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    assert len(info.image_size) == 2


def test_dataset_info_reads_no_files(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "empty"))
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("cifar100").class_names == tuple(sorted(dataset_info("cifar100").class_names))
    assert dataset_info("fashion-mnist").class_names[0] == "T-shirt/top"
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("name", PAPER_DATASETS + ["digits"])
def test_options_rejected_for_fixed_datasets(name, tmp_path):
    with pytest.raises(RobenchError, match="unknown option"):
        load_dataset(name, data_dir=tmp_path, options={"num_classes": 3})
    with pytest.raises(RobenchError, match="unknown option"):
        dataset_info(name, {"num_classes": 3})


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("ROBENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "robench" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "robench" / "data"


# ---------------------------------------------------------------- synthetic

SYNTHETIC_OPTIONS = [
    {},
    {"num_classes": 3, "channels": 3, "image_size": [6, 10], "n_train": 60, "n_test": 31, "data_seed": 5},
    {"num_classes": 2, "image_size": 4, "n_train": 7, "n_test": 5},
]


@pytest.mark.parametrize("options", SYNTHETIC_OPTIONS)
def test_synthetic_shapes_ranges_balance(options):
    s = load_dataset("synthetic", options=options)
    o = {**offline.SYNTHETIC_DEFAULTS, **options}
    hw = tuple(o["image_size"]) if isinstance(o["image_size"], list) else (o["image_size"],) * 2
    assert isinstance(s, DataSplits)
    assert s.x_train.shape == (o["n_train"], o["channels"], *hw)
    assert s.x_test.shape == (o["n_test"], o["channels"], *hw)
    assert s.x_train.dtype == s.x_test.dtype == torch.float32
    assert s.y_train.dtype == s.y_test.dtype == torch.int64
    for x in (s.x_train, s.x_test):
        assert 0.0 <= x.min() and x.max() <= 1.0
    counts = torch.bincount(s.y_train, minlength=o["num_classes"])
    assert counts.max() - counts.min() <= 1
    assert s.info.image_size == hw and s.info.channels == o["channels"]
    assert s.info.num_classes == o["num_classes"] and s.info.class_names[0] == "class-0"
    assert s.info.mean == pytest.approx(s.x_train.double().mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert s.info.std == pytest.approx(s.x_train.double().std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-5)
    assert dataset_info("synthetic", options) == s.info


def test_synthetic_deterministic_and_seeded():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_dataset("synthetic", options={"data_seed": 1})
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("options", SYNTHETIC_OPTIONS[:2])
def test_synthetic_is_separable(options):
    """A nearest-class-mean classifier fitted on train gets > 90% on test."""
    s = load_dataset("synthetic", options=options)
    k = s.info.num_classes
    means = torch.stack([s.x_train[s.y_train == c].mean(0) for c in range(k)]).flatten(1)
    pred = torch.cdist(s.x_test.flatten(1), means).argmin(1)
    assert (pred == s.y_test).float().mean() > 0.9


@pytest.mark.parametrize("options, message", [
    ({"n_classes": 3}, "unknown option"),
    ({"num_classes": 1}, "num_classes"),
    ({"channels": 0}, "channels"),
    ({"n_train": 2.5}, "n_train"),
    ({"n_test": True}, "n_test"),
    ({"image_size": [8]}, "image_size"),
    ({"image_size": "8"}, "image_size"),
    ({"image_size": [8, 0]}, "image_size"),
])
def test_synthetic_bad_options(options, message):
    with pytest.raises(RobenchError, match=message):
        load_dataset("synthetic", options=options)


# ---------------------------------------------------------------- digits

def test_digits_fixed_split():
    s = load_dataset("digits")
    assert s.x_train.shape == (1437, 1, 8, 8) and s.x_test.shape == (360, 1, 8, 8)
    assert s.x_train.min() == 0.0 and s.x_train.max() == 1.0 and s.x_train.dtype == torch.float32
    assert set(s.y_train.tolist()) == set(range(10)) == set(s.y_test.tolist())
    assert torch.bincount(s.y_test).min() >= 35  # stratified: ~36 per class
    other_seed = load_dataset("digits", seed=123)
    assert torch.equal(s.x_test, other_seed.x_test)  # the test set never depends on seed
    assert s.info.mean[0] == pytest.approx(s.x_train.mean().item(), abs=1e-5)
    # train + test is exactly scikit-learn's digits, each image once
    from collections import Counter

    from sklearn.datasets import load_digits

    ours = Counter(map(tuple, torch.cat([s.x_train, s.x_test]).flatten(1).mul(16).round().int().tolist()))
    assert ours == Counter(map(tuple, load_digits().data.astype(int).tolist()))


# ---------------------------------------------------------------- stratified subsets

def test_stratified_subset_proportional_and_sorted():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_subset(y, 10, seed=0)
    assert idx.dtype == torch.int64
    assert torch.equal(idx, torch.sort(idx).values) and len(set(idx.tolist())) == 10
    assert torch.bincount(y[idx]).tolist() == [5, 3, 2]


def test_stratified_subset_every_class_represented():
    y = torch.tensor([0] * 97 + [1] * 2 + [2] * 1)
    assert torch.bincount(y[stratified_subset(y, 3, seed=0)]).tolist() == [1, 1, 1]
    assert torch.bincount(y[stratified_subset(y, 10, seed=0)], minlength=3).min() >= 1
    assert len(stratified_subset(y, 2, seed=0)) == 2  # fewer than the classes: still exactly n


@pytest.mark.parametrize("n", [1, 7, 33, 99, 100])
def test_stratified_subset_sizes(n):
    y = torch.from_numpy(np.random.default_rng(1).integers(0, 7, 100))
    idx = stratified_subset(y, n, seed=3)
    assert len(idx) == len(set(idx.tolist())) == n and idx.max() < 100


def test_stratified_subset_seeded():
    y = torch.arange(1000) % 10
    a, b, c = (stratified_subset(y, 100, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.bincount(y[a]).tolist() == [10] * 10


@pytest.mark.parametrize("n", [0, -1, 12])
def test_stratified_subset_bad_sizes(n):
    with pytest.raises(RobenchError):
        stratified_subset(torch.arange(11) % 2, n, seed=0)


def test_load_dataset_subsets():
    s = load_dataset("synthetic", train_subset=100, test_subset=20, seed=4)
    assert len(s.x_train) == len(s.y_train) == 100 and len(s.x_test) == 20
    assert torch.bincount(s.y_test).tolist() == [2] * 10
    full = load_dataset("synthetic")
    idx = stratified_subset(full.y_train, 100, seed=4)
    assert torch.equal(s.x_train, full.x_train[idx]) and s.info == full.info


@pytest.mark.parametrize("kwargs", [{"train_subset": 0}, {"test_subset": -5}, {"train_subset": 513}])
def test_load_dataset_bad_subsets(kwargs):
    with pytest.raises(RobenchError, match="subset"):
        load_dataset("synthetic", **kwargs)


# ---------------------------------------------------------------- missing data

@pytest.mark.parametrize("name, layout, first", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte[.gz]"),
    ("fashion-mnist", "FashionMNIST/raw", "train-images-idx3-ubyte[.gz]"),
    ("svhn", "svhn", "train_32x32.mat"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("cifar100", "cifar-100-python", "train"),
])
def test_missing_data_message(name, layout, first, tmp_path, no_debian):
    with pytest.raises(RobenchError) as err:
        load_dataset(name, data_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name} not found: looked for {first}")
    assert str(tmp_path / layout) in message
    assert "--download (needs internet)" in message and f"--data-dir DIR holding {layout}/" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion-mnist")
    assert (str(no_debian) in message) == (name == "fashion-mnist")


def test_partial_idx_dataset_is_missing(tmp_path, no_debian):
    write_fake_idx_dataset(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(RobenchError, match="mnist not found"):
        load_dataset("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------- IDX files

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [">u1", ">i2", ">f4"])
def test_read_idx_roundtrip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) - 4).reshape(2, 3, 5)
    if dtype == ">u1":
        array = array + 4
    path = write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array, dtype)
    out = read_idx(path)
    assert out.shape == (2, 3, 5) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated_names_file(tmp_path, suffix):
    path = write_idx(tmp_path / f"t-idx3-ubyte{suffix}", np.ones((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(RobenchError, match=str(path.name)):
        read_idx(path)


def test_read_idx_bad_header(tmp_path):
    path = tmp_path / "junk-idx1-ubyte"
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(RobenchError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_dataset_from_data_dir(tmp_path, no_debian, gz):
    x_train, y_train, x_test, y_test = write_fake_idx_dataset(tmp_path / "MNIST" / "raw", gz=gz)
    s = load_dataset("mnist", data_dir=tmp_path)
    assert s.x_train.shape == (20, 1, 28, 28) and s.x_test.shape == (10, 1, 28, 28)
    assert torch.allclose(s.x_train[:, 0], torch.from_numpy(x_train).float() / 255)
    assert s.y_test.tolist() == y_test.tolist() and s.y_train.dtype == torch.int64
    assert s.info == dataset_info("mnist")


def test_fashion_mnist_found_in_debian_dir(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share"
    write_fake_idx_dataset(debian, n_train=30)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    s = load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    assert len(s.x_train) == 30


def test_idx_labels_out_of_range(tmp_path, no_debian):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_idx_dataset(raw)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(RobenchError, match="labels outside"):
        load_dataset("mnist", data_dir=tmp_path)


def test_download_fetches_only_when_asked_and_missing(tmp_path, no_debian, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, download))
            write_fake_idx_dataset(Path(root) / "FashionMNIST" / "raw", n_train=12)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    with pytest.raises(RobenchError, match="not found"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert calls == []
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path, download=True).x_train) == 12
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path, download=True).x_train) == 12
    assert calls == [(str(tmp_path), True)]


@pytest.mark.parametrize("name, module, attribute", [
    ("mnist", "torchvision.datasets", "MNIST"),
    ("fashion-mnist", "torchvision.datasets", "FashionMNIST"),
    ("svhn", "torchvision.datasets.utils", "download_url"),
    ("cifar10", "torchvision.datasets.utils", "download_and_extract_archive"),
    ("cifar100", "torchvision.datasets.utils", "download_and_extract_archive"),
])
def test_download_failure_is_one_line(name, module, attribute, tmp_path, no_debian, monkeypatch):
    import importlib

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(importlib.import_module(module), attribute, offline)
    with pytest.raises(RobenchError, match=f"^downloading {name} failed: network is unreachable$"):
        load_dataset(name, data_dir=tmp_path, download=True)


def test_cifar_download_then_read(tmp_path, monkeypatch):
    import torchvision.datasets.utils

    calls = []

    def fake_fetch(url, download_root, extract_root=None, filename=None, md5=None):
        calls.append((url, filename, md5))
        write_fake_cifar(Path(download_root), "cifar100")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_fetch)
    assert load_dataset("cifar100", data_dir=tmp_path, download=True).x_test.shape == (6, 3, 32, 32)
    assert calls[0][1] == "cifar-100-python.tar.gz" and calls[0][2]


# ---------------------------------------------------------------- pickles and CIFAR

@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_unpickler_accepts_arrays(protocol):
    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3],
           "f": np.linspace(0, 1, 5), "s": np.float32(2.5)}
    out = load_numpy_pickle(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(out[b"data"], obj[b"data"])
    np.testing.assert_array_equal(out["f"], obj["f"])
    assert out[b"labels"] == [1, 2, 3] and out["s"] == np.float32(2.5)


@pytest.mark.parametrize("payload", [Evil(), {"x": np.zeros(2), "y": [Evil()]}, eval, os.getcwd])
def test_numpy_unpickler_rejects_other_globals(payload, tmp_path):
    blob = pickle.dumps(payload, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        NumpyUnpickler(__import__("io").BytesIO(blob)).load()
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    with pytest.raises(RobenchError, match=f"{path}.*refusing"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader_on_fake_directory(tmp_path, name):
    written = write_fake_cifar(tmp_path, name)
    s = load_dataset(name, data_dir=tmp_path)
    n_train = 30 if name == "cifar10" else 6
    assert s.x_train.shape == (n_train, 3, 32, 32) and s.x_test.shape == (6, 3, 32, 32)
    first = "data_batch_1" if name == "cifar10" else "train"
    # row layout: 1024 red, then green, then blue values, each 32x32 row-major
    expected = torch.from_numpy(written[first][0].reshape(3, 32, 32)).float() / 255
    assert torch.equal(s.x_train[0], expected)
    assert s.y_train[:6].tolist() == written[first + ":labels"].tolist()
    assert s.info.num_classes == (10 if name == "cifar10" else 100)


def test_cifar_corrupt_batch_names_file(tmp_path):
    write_fake_cifar(tmp_path, "cifar10")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(RobenchError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_malicious_batch_rejected(tmp_path):
    write_fake_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(RobenchError, match="test_batch.*refusing"):
        load_dataset("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------- SVHN

def test_svhn_loader_on_fake_mat_files(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    folder = tmp_path / "svhn"
    folder.mkdir()
    images = {}
    for split, n in (("train", 7), ("test", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's (H, W, C, N)
        y = np.array([10, 1, 2, 3, 4, 5, 9][:n], dtype=np.uint8)[:, None]
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        images[split] = x
    s = load_dataset("svhn", data_dir=tmp_path)
    assert s.x_train.shape == (7, 3, 32, 32) and s.x_test.shape == (4, 3, 32, 32)
    assert s.y_train.tolist() == [0, 1, 2, 3, 4, 5, 9]  # label 10 means digit 0
    assert torch.equal(s.x_train[2, 1], torch.from_numpy(images["train"][:, :, 1, 2]).float() / 255)
    (folder / "test_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(RobenchError, match="test_32x32.mat"):
        load_dataset("svhn", data_dir=tmp_path)


# ---------------------------------------------------------------- real data

@pytest.mark.slow
def test_real_fashion_mnist_from_debian_package(tmp_path):
    if not (data.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("apt-get install dataset-fashion-mnist")
    start = time.perf_counter()
    s = load_dataset("fashion-mnist", data_dir=tmp_path)
    print(f"fashion-mnist loaded in {time.perf_counter() - start:.2f}s")
    assert s.x_train.shape == (60000, 1, 28, 28) and s.x_test.shape == (10000, 1, 28, 28)
    assert s.x_train.min() == 0.0 and s.x_train.max() == 1.0
    assert torch.bincount(s.y_train).tolist() == [6000] * 10
    assert s.x_train.mean().item() == pytest.approx(s.info.mean[0], abs=1e-4)
    assert s.x_train.std().item() == pytest.approx(s.info.std[0], abs=1e-4)
