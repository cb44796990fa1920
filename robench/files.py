"""Writing files without losing data: atomic writes, content hashes and safetensors records.

Every file robench produces is written to a temporary file in the same directory and then
renamed over the target, so a crash or Ctrl-C leaves either the old or the new file, never a
truncated one. Tensors (weights, per-image records) are stored as safetensors, never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from robench.errors import RobenchError


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~current_umask()
"""The mode open() would give a new file; mkstemp makes 0600, which a rename would keep."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors serialisation of ``tensors``, the same bytes for the same tensors and metadata: the
    library writes its metadata map in a random order per call (a Rust HashMap), so it is re-written sorted
    (same length, so the padding and the tensor offsets stay as they are)."""
    raw = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    if not metadata:
        return raw
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # cannot happen for the same content; keep the library's bytes rather than guess
        return raw
    return raw[:8] + text.ljust(n) + raw[8 + n:]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write a dict of tensors as safetensors."""
    atomic_write_bytes(path, safetensors_bytes(tensors))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; an unreadable file is a :class:`RobenchError`."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RobenchError(f"cannot read {path}: {exc}") from None


def check_directory_target(path: Path, flag: str) -> None:
    """Refuse ``path`` as a directory to write when it, or the nearest of its parents that exists, is not a
    directory (a :class:`RobenchError` naming ``flag``); nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RobenchError(f"{flag} {path} exists and is not a directory")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise RobenchError(f"{flag} {path}: {parent} is not a directory")
            return
