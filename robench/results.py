"""Writing results without losing data: atomic file writes and provenance records.

Every file robench produces is written to a temporary file in the same directory and
then renamed over the target, so a crash or Ctrl-C leaves either the old or the new
file, never a truncated one. :func:`environment` records what a result came from
(package versions, git commit, device) for run metadata and manifests.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from robench.errors import RobenchError

PACKAGES = ("robench", "torch", "torchvision", "numpy", "safetensors", "adversarial-robustness-toolbox")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp makes 0600)


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
        os.chmod(tmp, _FILE_MODE)
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


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(src: Path | None = None) -> str | None:
    """The commit of the robench source tree (``+dirty`` if the code has local changes), or None.

    Only ``robench/`` and ``pyproject.toml`` count: a run that writes into a tracked ``results/``
    directory does not make its own provenance dirty.
    """
    src = src or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "robench",
                                "pyproject.toml"], cwd=src, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch"] = torch.__version__  # keeps the build tag, e.g. +cu130 or +cpu
    versions["cuda"] = torch.version.cuda
    return versions


def environment(device: torch.device) -> dict:
    """Provenance of a result: versions, git commit, platform, device and thread count."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
    }


# --- attack results: one tidy CSV row per (checkpoint, attack, backend, attack_loss, ε, ...) -------------

ATTACK_COLUMNS = [
    "dataset", "model", "loss", "training", "seed", "checkpoint", "attack", "backend", "attack_loss", "targeted",
    "eps", "eps_mode", "steps", "step_size", "restarts", "sweep", "n", "n_correct", "accuracy", "target_success",
    "seconds", "attack_seed", "robench_version", "source",
]
"""Columns of an attacks CSV. ``seed`` is the checkpoint's training seed; ``attack_seed`` seeds
the evaluated subset and the attacks' randomness. ``source``: for ``transfer`` the checkpoint the
examples were crafted on; for ``worst`` the attacks it takes the per-image worst case over."""

LEGACY_COLUMNS = ATTACK_COLUMNS[:-1]
"""The header before ``source`` existed (robench 0.1 CSVs): read as if ``source`` were empty."""

KEY_COLUMNS = ["checkpoint", "attack", "backend", "attack_loss", "eps", "eps_mode", "steps", "step_size",
               "restarts", "sweep", "n", "attack_seed"]
"""Columns that identify a row: a re-run skips rows whose key is already present. ``source``
joins the key only when set, so rows written before it existed keep their identity."""


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def row_key(row: dict) -> tuple[str, ...]:
    """A row's identity, with numbers normalised so that 0.1 written and read back compare equal."""
    key = []
    for column in KEY_COLUMNS:
        value = row.get(column)
        text = _cell(value) if not isinstance(value, str) else value
        try:
            text = repr(float(text)) if text not in ("", "true", "false") else text
        except ValueError:
            pass
        key.append(text)
    if row.get("source"):
        key.append(str(row["source"]))
    return tuple(key)


def read_attack_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an attacks CSV as dicts of strings; [] if it does not exist.

    A file that is unreadable or whose header is not robench's attacks schema is a
    :class:`RobenchError` (and is never written to).
    """
    import csv

    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [{**dict(zip(ATTACK_COLUMNS, r)), "source": r[len(LEGACY_COLUMNS)] if len(r) > len(LEGACY_COLUMNS)
                     else ""} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RobenchError(f"cannot read {path}: {exc}") from None
    if header not in (ATTACK_COLUMNS, LEGACY_COLUMNS):
        raise RobenchError(f"{path} is not a robench attacks CSV (its header differs); choose another --out")
    return rows


def write_attack_rows(path: str | Path, rows: list[dict]) -> None:
    """Atomically (re)write an attacks CSV with ``rows`` (dicts with ATTACK_COLUMNS keys)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ATTACK_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) if not isinstance(row.get(c), str) else row[c] for c in ATTACK_COLUMNS])
    atomic_write_text(path, buffer.getvalue())


def append_attack_row(path: str | Path, row: dict) -> None:
    """Add ``row`` to the CSV at ``path`` atomically, replacing a row with the same key."""
    rows = [r for r in read_attack_rows(path) if row_key(r) != row_key(row)]
    write_attack_rows(path, rows + [row])
