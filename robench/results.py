"""Attack results: the tidy attacks CSV, one row per (checkpoint, attack, backend, attack_loss, ε, ...).

:data:`ATTACK_COLUMNS` is the schema, :func:`row_key` a row's identity (a re-run skips rows
whose key is present) and :func:`per_image_path` where the per-image record of a row (which
images stayed correct, which reached the target) lives beside the CSV. Every write is atomic
(:mod:`robench.files`).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from robench.errors import RobenchError
from robench.files import atomic_write_text

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


def cell_text(value) -> str:
    """A value as it is written into the CSV: "" for None, true/false, repr for floats."""
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
        text = cell_text(value) if not isinstance(value, str) else value
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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ATTACK_COLUMNS)
    for row in rows:
        writer.writerow([cell_text(row.get(c)) if not isinstance(row.get(c), str) else row[c] for c in ATTACK_COLUMNS])
    atomic_write_text(path, buffer.getvalue())


def append_attack_row(path: str | Path, row: dict) -> None:
    """Add ``row`` to the CSV at ``path`` atomically, replacing a row with the same key."""
    rows = [r for r in read_attack_rows(path) if row_key(r) != row_key(row)]
    write_attack_rows(path, rows + [row])


def per_image_path(out: str | Path, row: dict) -> Path:
    """The per-image record of ``row`` of the CSV ``out``: ``<csv stem>.per_image/<key digest>.safetensors``."""
    out = Path(out)
    digest = hashlib.sha1("\x1f".join(row_key(row)).encode()).hexdigest()[:20]
    return out.with_name(out.stem + ".per_image") / f"{digest}.safetensors"
