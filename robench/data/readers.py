"""Readers for the file formats the image datasets ship in.

* IDX (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/): MNIST and Fashion-MNIST,
  plain or gzip-compressed.
* Python pickles of numpy arrays: the CIFAR-10/100 "python version" batches
  (Krizhevsky 2009). These are read with :class:`NumpyUnpickler`, which only builds
  numpy arrays, dtypes and bytes, never arbitrary objects: a pickle that names any other
  global (``os.system``, ``builtins.eval``, ...) is rejected.
* MATLAB ``.mat`` files: the SVHN cropped-digits splits (Netzer et al. 2011).

A missing file is the caller's business; an unreadable, truncated or malformed file
raises :class:`RobenchError` naming the file, never a bare traceback.
"""

from __future__ import annotations

import gzip
import importlib
import io
import pickle
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from robench.errors import RobenchError

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or uncompressed) into a native-endian numpy array.

    Layout: two zero bytes, a type byte, the number of dimensions, one big-endian int32
    per dimension, then the data in C order.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise RobenchError(f"cannot read {path}: {e}; delete it and fetch it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise RobenchError(f"{path} is not an IDX file (bad header); delete it and fetch it again")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise RobenchError(f"{path} is truncated (incomplete header); delete it and fetch it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise RobenchError(
            f"{path} has {len(raw)} bytes but its header {shape} needs {expected}; "
            "the file is truncated or corrupt, delete it and fetch it again"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a writable native-endian copy


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def find_idx_files(folder: Path) -> list[Path] | None:
    """MNIST's four IDX files in ``folder`` (uncompressed preferred, else ``.gz``), or None if any is missing."""
    found = [next((p for p in (folder / s, folder / f"{s}.gz") if p.is_file()), None) for s in IDX_STEMS]
    return None if None in found else found  # type: ignore[return-value]


def read_idx_splits(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four files of :func:`find_idx_files` -> uint8 images (N, 1, H, W) and int64 labels, train then test."""
    x_train, y_train, x_test, y_test = (read_idx(p) for p in files)
    for x, y, p in ((x_train, y_train, files[0]), (x_test, y_test, files[2])):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise RobenchError(f"{p}: images {x.shape} do not match labels {y.shape}")
    return x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64)


def _numpy_global(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` on numpy 2, ``numpy.core...`` on numpy 1."""
    try:
        module = importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy < 2
        module = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(module, name)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,  # bytes in protocol-2 pickles
    ("codecs", "encode"): lambda: __import__("codecs").encode,
}
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = lambda: _numpy_global("multiarray", "_reconstruct")
    _SAFE_GLOBALS[(f"{_core}.multiarray", "scalar")] = lambda: _numpy_global("multiarray", "scalar")
    _SAFE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = lambda: _numpy_global("numeric", "_frombuffer")


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that can only build numpy arrays, dtypes and plain containers.

    ``find_class`` resolves the handful of globals numpy's own pickles use and raises
    :class:`pickle.UnpicklingError` for anything else, so loading an untrusted pickle
    cannot run code. Python 2 pickles (CIFAR) need ``encoding="bytes"`` or ``"latin1"``.
    """

    def find_class(self, module: str, name: str) -> Any:
        factory = _SAFE_GLOBALS.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        return factory()


def load_numpy_pickle(source: str | Path | BinaryIO | bytes, *, encoding: str = "bytes") -> Any:
    """Unpickle ``source`` (a path, an open binary file or bytes) with :class:`NumpyUnpickler`.

    A rejected global or a malformed pickle raises :class:`RobenchError` naming the file.
    """
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as f:
                return load_numpy_pickle(f, encoding=encoding)
        except RobenchError as e:
            raise RobenchError(f"{source}: {e}") from e
        except OSError as e:
            raise RobenchError(f"cannot read {source}: {e}") from e
    f = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return NumpyUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise RobenchError(f"not a valid numpy pickle ({type(e).__name__}: {e})") from e


def read_cifar_batch(path: str | Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR "python version" batch -> (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    ``label_key`` is ``"labels"`` for CIFAR-10 and ``"fine_labels"`` for CIFAR-100.
    """
    batch = load_numpy_pickle(path, encoding="bytes")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32)
    except (KeyError, TypeError, ValueError) as e:
        raise RobenchError(f"{path} is not a CIFAR batch ({type(e).__name__}: {e})") from e
    if len(images) != len(labels):
        raise RobenchError(f"{path} has {len(images)} images but {len(labels)} labels")
    return images, labels


def read_cifar_dir(
    folder: Path, train: list[str], test: list[str], label_key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the ``train`` and ``test`` batches in ``folder`` (see :func:`read_cifar_batch`)."""
    splits = []
    for names in (train, test):
        images, labels = zip(*(read_cifar_batch(folder / n, label_key) for n in names))
        splits += [np.concatenate(images), np.concatenate(labels)]
    return tuple(splits)  # type: ignore[return-value]


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``*_32x32.mat`` -> (uint8 images (N, 3, 32, 32), int64 labels (N,)), label 10 -> 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except Exception as e:  # scipy raises many types for a bad .mat; name the file instead
        raise RobenchError(f"cannot read {path} as an SVHN .mat file ({type(e).__name__}: {e})") from e
    if len(images) != len(labels):
        raise RobenchError(f"{path} has {len(images)} images but {len(labels)} labels")
    labels[labels == 10] = 0
    return images, labels
