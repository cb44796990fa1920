"""Attack results: the tidy attacks CSV, one row per (checkpoint, attack, backend, attack_loss, ε, ...).

:data:`ATTACK_COLUMNS` is the schema; :func:`row_key` names a row's slot and :func:`row_identity`
what it measured (the hashes of the model and of the images), so a row whose model changed is
recognisably stale. The CSV is the view users read and commit; the store of record beside it is
:mod:`robench.evaluation.store`. Reading is strict: a damaged or foreign file is refused, never
"repaired". Every write is atomic (:mod:`robench.files`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from robench.errors import RobenchError
from robench.files import atomic_write_text

ATTACK_COLUMNS = [
    "dataset", "model", "loss", "training", "seed", "checkpoint", "attack", "backend", "attack_loss", "targeted",
    "eps", "eps_mode", "norm", "steps", "step_size", "restarts", "sweep", "given", "n", "n_correct", "accuracy",
    "target_success", "seconds", "attack_seed", "robench_version", "source", "model_sha256", "images_sha256",
    "source_sha256",
]
"""Columns of an attacks CSV. ``seed`` is the checkpoint's training seed; ``attack_seed`` seeds
the evaluated subset and the attacks' randomness. ``source``: for ``transfer`` the checkpoint the
examples were crafted on; for ``worst`` the attacks it takes the per-image worst case over.
``norm``: the threat model (``Linf`` or ``L2``, RobustBench's names). ``given``: empty when every
image was attacked, else the attacks (``worst``-style labels) whose survivors alone were attacked:
the images they had broken count as broken in this row too (an audit's expensive attacks).
The identity columns say what a row measured: ``model_sha256`` the SHA-256 of the attacked weights,
``images_sha256`` that of the evaluated images and labels, ``source_sha256`` that of a transfer
source's weights (see :data:`IDENTITY_COLUMNS`)."""

IDENTITY_COLUMNS = ["model_sha256", "images_sha256", "source_sha256"]
"""A row is *current* only while these equal the identities of what it names; else it is stale."""

HEADER_0_1 = ["dataset", "model", "loss", "training", "seed", "checkpoint", "attack", "backend", "attack_loss",
              "targeted", "eps", "eps_mode", "steps", "step_size", "restarts", "sweep", "n", "n_correct", "accuracy",
              "target_success", "seconds", "attack_seed", "robench_version"]
LEGACY_HEADERS = (HEADER_0_1, HEADER_0_1 + ["source"], HEADER_0_1 + ["source"] + IDENTITY_COLUMNS)
"""Headers of older robench CSVs (0.1: no ``source``; then no identity columns; then no ``norm``/``given``),
read with those cells at their defaults (:data:`COLUMN_DEFAULTS`). Rows without identity columns name no
model: they are never reused as current and reports mark them."""

COLUMN_DEFAULTS = {"norm": "Linf"}
"""What a cell an older CSV lacks means (every other missing cell is empty)."""

SLOT_COLUMNS = ["checkpoint", "attack", "backend", "attack_loss", "eps", "eps_mode", "norm", "steps", "step_size",
                "restarts", "sweep", "given", "n", "attack_seed", "source"]
"""Columns that say where a row belongs (its *slot*): one row per slot. Whether the row in a slot is
still current is a matter of its identity columns."""

INTEGER_COLUMNS = ("n", "n_correct", "seed", "attack_seed", "steps", "restarts")
NUMBER_COLUMNS = ("eps", "accuracy", "target_success", "seconds", "step_size")
REQUIRED_NUMBERS = ("eps", "n", "n_correct", "accuracy")


def cell_text(value) -> str:
    """A value as it is written into the CSV: "" for None, true/false, repr for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def row_cells(row: dict) -> dict[str, str]:
    """``row`` as the CSV's strings, one per column of :data:`ATTACK_COLUMNS` (missing ones at their defaults)."""
    row = {**COLUMN_DEFAULTS, **row}
    return {c: row[c] if isinstance(row.get(c), str) else cell_text(row.get(c)) for c in ATTACK_COLUMNS}


def row_key(row: dict) -> tuple[str, ...]:
    """A row's slot, with numbers normalised so that 0.1 written and read back compare equal."""
    key = []
    for column in SLOT_COLUMNS:
        value = row.get(column, COLUMN_DEFAULTS.get(column))
        text = cell_text(value) if not isinstance(value, str) else value
        try:
            text = repr(float(text)) if text not in ("", "true", "false") else text
        except ValueError:
            pass
        key.append(text)
    return tuple(key)


def row_identity(row: dict) -> tuple[str, ...]:
    """What a row measured: (model_sha256, images_sha256, source_sha256), "" where unknown."""
    return tuple(str(row.get(c) or "") for c in IDENTITY_COLUMNS)


def check_cells(path: Path, line: int, row: dict[str, str]) -> None:
    """Refuse a row whose numbers are not numbers (a damaged or hand-edited file)."""
    for column in INTEGER_COLUMNS + NUMBER_COLUMNS:
        text = row[column]
        if text == "" and column not in REQUIRED_NUMBERS:
            continue
        try:
            int(text) if column in INTEGER_COLUMNS else float(text)
        except ValueError:
            raise RobenchError(f"{path} line {line}: {column} is {text!r}, not a number: the file is damaged or "
                               "not robench's; it was left as it is") from None
    if row["norm"] not in ("Linf", "L2"):
        raise RobenchError(f"{path} line {line}: norm is {row['norm']!r}, not Linf or L2: the file is damaged or not "
                           "robench's; it was left as it is")
    for column in IDENTITY_COLUMNS:
        if row[column] and (len(row[column]) != 64 or any(ch not in "0123456789abcdef" for ch in row[column])):
            raise RobenchError(f"{path} line {line}: {column} is not a SHA-256: the file is damaged; it was left as it is")


def read_attack_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an attacks CSV as dicts of strings (every column of :data:`ATTACK_COLUMNS`); [] if absent.

    Strict: a directory, an unreadable file, a foreign header, a line cut short, a row with the
    wrong number of cells or a non-number where a number belongs is a :class:`RobenchError`
    naming the file and line, and the file is never written to.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise RobenchError(f"{path} is not a file: expected an attacks CSV")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RobenchError(f"cannot read {path}: {exc}") from None
    if text and not text.endswith("\n"):
        raise RobenchError(f"{path} line {text.count(chr(10)) + 1} is cut short (no line end): the file is damaged; "
                           "it was left as it is")
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise RobenchError(f"cannot read {path}: {exc}") from None
    header = table[0] if table else None
    if header != ATTACK_COLUMNS and header not in LEGACY_HEADERS:
        raise RobenchError(f"{path} is not a robench attacks CSV (its header differs); choose another --out")
    rows = []
    for line, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise RobenchError(f"{path} line {line} has {len(cells)} cells, the header {len(header)}: the file is "
                               "damaged; it was left as it is")
        row = {**dict.fromkeys(ATTACK_COLUMNS, ""), **COLUMN_DEFAULTS, **dict(zip(header, cells))}
        check_cells(path, line, row)
        rows.append(row)
    return rows


def attack_csv_text(rows: list[dict]) -> str:
    """The CSV text of ``rows`` under the current header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ATTACK_COLUMNS)
    for row in rows:
        cells = row_cells(row)
        writer.writerow([cells[c] for c in ATTACK_COLUMNS])
    return buffer.getvalue()


def write_attack_rows(path: str | Path, rows: list[dict]) -> None:
    """Atomically (re)write an attacks CSV with ``rows`` (dicts with ATTACK_COLUMNS keys)."""
    atomic_write_text(path, attack_csv_text(rows))
