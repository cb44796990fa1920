"""The store of record for attack results: ``<stem>.sqlite`` beside the attacks CSV, which is its view.

Every row of an attacks CSV lives in a SQLite database next to it (``attacks.csv`` ->
``attacks.sqlite``) together with its per-image record (which images stayed correct,
which reached the target; bit-packed). Writers change the store in one transaction per batch of
rows and then rewrite the CSV atomically from it, worst rows included (:mod:`robench.evaluation.worst`),
in a canonical order, so the CSV never depends on which process wrote which row first. A lock
file (``.<stem>.lock``) serialises writers, so concurrent ``robench attack`` / ``robench run``
processes on one results directory never lose or duplicate a row, and a check of the CSV that a
writer overtakes looks again (:meth:`ResultStore.check_export`) rather than refuse a sound file.
The database keeps SQLite's rollback journal rather than WAL: results directories are committed to
git, and in WAL mode committed rows can wait in a ``-wal`` file that a commit of the database alone
would leave out.

The CSV is guarded: before every write it must read cleanly (:func:`robench.results.read_attack_rows`)
and be byte for byte the last export (its SHA-256 is kept in the store), so a damaged or
hand-edited CSV is refused with one line and left as it is. A CSV without a store (one written by
an older robench, or a store deleted by hand) is imported on first write, with the per-image records
an older robench kept in ``<stem>.per_image/``; rows without identity columns stay unbound (never
current).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from robench.errors import RobenchError
from robench.evaluation.worst import WORST, worst_rows
from robench.files import atomic_write_bytes, file_sha256, load_tensors
from robench.results import (ATTACK_COLUMNS, attack_csv_text, read_attack_rows, row_cells, row_identity, row_key)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    slot TEXT PRIMARY KEY,   -- JSON of robench.results.row_key(row)
    cells TEXT NOT NULL,     -- JSON of the row's CSV cells
    n INTEGER,               -- images in the per-image record (NULL: no record)
    correct BLOB,            -- numpy.packbits of the per-image "still correct" flags
    target_hit BLOB          -- numpy.packbits of the per-image "reached the target" flags
);
"""
SCHEMA_VERSION = "2"  # 2: rows gained the norm and given columns (slots include them)
LEGACY_KEY_COLUMNS = ["checkpoint", "attack", "backend", "attack_loss", "eps", "eps_mode", "steps", "step_size",
                      "restarts", "sweep", "n", "attack_seed"]
NUMERIC_ORDER = {"eps", "steps", "step_size", "restarts", "n", "attack_seed"}
ORDER = ["checkpoint", "attack", "backend", "attack_loss", "norm", "steps", "step_size", "restarts", "sweep", "given",
         "eps_mode", "n", "attack_seed", "source", "eps"]
Record = tuple[torch.Tensor, torch.Tensor]


def canonical_order(row: dict) -> tuple:
    """Rows sorted by checkpoint, attack configuration and ε; worst rows after every attack row."""
    key: list = [row["attack"] == WORST]
    for column in ORDER:
        text = str(row.get(column) or "")
        key.append((0, float(text), "") if column in NUMERIC_ORDER and text else (1, 0.0, text))
    return tuple(key)


def pack(flags: torch.Tensor) -> bytes:
    return np.packbits(flags.bool().cpu().numpy().astype(np.uint8)).tobytes()


def unpack(blob: bytes, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n).astype(bool))


def legacy_per_image_path(csv: Path, row: dict) -> Path:
    """Where robench before the store kept a row's per-image record: named by a digest of its old row key."""
    key = []
    for column in LEGACY_KEY_COLUMNS:
        text = row[column]
        try:
            text = repr(float(text)) if text not in ("", "true", "false") else text
        except ValueError:
            pass
        key.append(text)
    if row.get("source"):
        key.append(row["source"])
    digest = hashlib.sha1("\x1f".join(key).encode()).hexdigest()[:20]
    return csv.with_name(csv.stem + ".per_image") / f"{digest}.safetensors"


class ResultStore:
    """The rows and per-image records of one attacks CSV (``csv``), kept in ``<stem>.sqlite`` beside it."""

    def __init__(self, csv: str | Path):
        self.csv = Path(csv)
        self.path = self.csv.with_name(self.csv.stem + ".sqlite")
        self.lock_path = self.csv.with_name(f".{self.csv.stem}.lock")

    # --- reading ----------------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, str]]:
        """Every attack row (worst rows excluded), in canonical order; from the CSV while no store exists."""
        if not self.path.exists():
            return sorted((r for r in read_attack_rows(self.csv) if r["attack"] != WORST), key=canonical_order)
        with self.connect(readonly=True) as db:
            return sorted((row_cells(json.loads(c)) for (c,) in db.execute("SELECT cells FROM rows")),
                          key=canonical_order)

    def items(self) -> list[tuple[dict[str, str], Record | None]]:
        """Every attack row with its per-image record (None without one), in canonical order."""
        if not self.path.exists():
            return [(row, None) for row in self.rows()]
        with self.connect(readonly=True) as db:
            records = self.records(db)
            rows = [(slot, row_cells(json.loads(c))) for slot, c in db.execute("SELECT slot, cells FROM rows")]
        return [(row, records.get(slot)) for slot, row in sorted(rows, key=lambda item: canonical_order(item[1]))]

    def record(self, row: dict) -> Record | None:
        """The per-image (correct, target hit) flags of the row in ``row``'s slot, or None."""
        if not self.path.exists():
            return None
        with self.connect(readonly=True) as db:
            current = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if current is None or current[0] != SCHEMA_VERSION:
            self.put_many([])  # an older store: bring its slots up to date first
        with self.connect(readonly=True) as db:
            found = db.execute("SELECT n, correct, target_hit FROM rows WHERE slot = ?", (slot_of(row),)).fetchone()
        return None if found is None or found[0] is None else (unpack(found[1], found[0]), unpack(found[2], found[0]))

    def check(self) -> None:
        """Refuse (one line, nothing written) a CSV that is damaged, foreign or changed since the last export."""
        read_attack_rows(self.csv)
        if self.path.exists() and self.csv.exists():
            with self.connect(readonly=True) as db:
                self.check_export(db)

    # --- writing ----------------------------------------------------------------------------------------

    def adopt(self) -> None:
        """Take over a CSV written without a store (an older robench's) now; a no-op once the store exists."""
        if self.csv.exists() and not self.path.exists():
            self.put_many([])

    def put(self, row: dict, record: Record | None) -> None:
        """Store ``row`` (replacing the row in its slot) with its per-image record, then rewrite the CSV."""
        self.put_many([(row, record)])

    def put_many(self, items: list[tuple[dict, Record | None]], delete: list[dict] = ()) -> None:
        """One transaction: remove the rows in the slots of ``delete``, store ``items``; then rewrite the CSV."""
        with self.writing() as db:
            db.executemany("DELETE FROM rows WHERE slot = ?", [(slot_of(r),) for r in delete])
            for row, record in items:
                cells = row_cells(row)
                n = None if record is None else len(record[0])
                blobs = (None, None) if record is None else (pack(record[0]), pack(record[1]))
                db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                           (slot_of(cells), json.dumps(cells), n, *blobs))

    def records(self, db: sqlite3.Connection) -> dict[str, Record]:
        return {slot: (unpack(c, n), unpack(t, n)) for slot, n, c, t in
                db.execute("SELECT slot, n, correct, target_hit FROM rows WHERE n IS NOT NULL")}

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """Hold the writers' lock, check the CSV, run one transaction, then export the CSV from the store."""
        self.check()
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with self.connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self.check_export(db)
                    self.import_csv(db)
                    self.upgrade(db)
                    yield db
                    text = self.export_text(db)
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('pending_csv_sha256', ?)", (digest,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                atomic_write_bytes(self.csv, text.encode())
                db.execute("INSERT OR REPLACE INTO meta VALUES ('csv_sha256', ?)", (digest,))

    @contextlib.contextmanager
    def connect(self, readonly: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            if readonly:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=120, isolation_level=None)
            else:
                db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
                db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise RobenchError(f"cannot open the result store {self.path}: {exc}") from None
        try:
            yield db
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RobenchError(f"the result store {self.path} stayed locked by another process for 2 minutes; "
                                   "try again") from None
            raise RobenchError(f"the result store {self.path} cannot be used: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise RobenchError(f"the result store {self.path} is damaged: {exc}") from None
        finally:
            db.close()

    def check_export(self, db: sqlite3.Connection) -> None:
        """The CSV on disk must be the store's last export (or the one a killed writer was renaming).

        Lock-free for readers, like a seqlock: the exports the store knows are read before and after the CSV,
        and a CSV outside them is refused only when they did not change meanwhile. (A writer moves the store
        through states whose CSV is always among the known exports, {A} -> {A, B} -> {A, B} with the CSV
        renamed -> {B}; a check that read {A} and then a CSV another process had just exported, B, must look
        again, not refuse a sound file.)
        """
        if not self.csv.exists():
            return
        exports = lambda: {v for k, v in db.execute("SELECT key, value FROM meta")  # noqa: E731
                           if k in ("csv_sha256", "pending_csv_sha256")}
        known = exports()
        while known and hashlib.sha256(self.csv.read_bytes()).hexdigest() not in known:
            again = exports()
            if again != known:
                known = again
                continue
            raise RobenchError(f"{self.csv} differs from what robench last wrote from {self.path.name} (edited by "
                               "hand?); both were left as they are: restore the CSV, or move it away to have it "
                               "rewritten from the store")

    def import_csv(self, db: sqlite3.Connection) -> None:
        """Once per store: take over the rows of a CSV written without one (and the old per-image records)."""
        if db.execute("SELECT 1 FROM meta WHERE key = 'imported'").fetchone():
            return
        for row in read_attack_rows(self.csv):
            if row["attack"] == WORST:
                continue
            legacy = legacy_per_image_path(self.csv, row)
            record = None
            if legacy.is_file():
                tensors = load_tensors(legacy)
                record = (tensors["correct"].bool(), tensors["target_hit"].bool())
            db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                       (slot_of(row), json.dumps(row_cells(row)), None if record is None else len(record[0]),
                        None if record is None else pack(record[0]), None if record is None else pack(record[1])))
        db.execute("INSERT INTO meta VALUES ('imported', 'yes')")
        if self.csv.exists():  # the CSV it was built from stays a known export until this writer's replaces it
            db.execute("INSERT OR REPLACE INTO meta VALUES ('csv_sha256', ?)", (file_sha256(self.csv),))

    def upgrade(self, db: sqlite3.Connection) -> None:
        """Bring an older store's rows to the current columns (defaults for new ones) and their slots."""
        found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if found is not None and found[0] == SCHEMA_VERSION:
            return
        for slot, cells, n, correct, target_hit in db.execute("SELECT * FROM rows").fetchall():
            row = row_cells(json.loads(cells))
            db.execute("DELETE FROM rows WHERE slot = ?", (slot,))
            db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                       (slot_of(row), json.dumps(row), n, correct, target_hit))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def export_text(self, db: sqlite3.Connection) -> str:
        """The CSV the store stands for: every row, then the worst rows, in canonical order."""
        rows = [row_cells(json.loads(c)) for (c,) in db.execute("SELECT cells FROM rows")]
        records = self.records(db)
        worst = worst_rows(rows, lambda r: records[slot_of(r)][0] if slot_of(r) in records else None)
        return attack_csv_text(sorted(rows + [row_cells(w) for w in worst], key=canonical_order))


def slot_of(row: dict) -> str:
    """The store's key of a row's slot (its :func:`robench.results.row_key`, as JSON)."""
    return json.dumps(row_key(row))


def is_current(row: dict, identity: tuple[str, ...]) -> bool:
    """Whether a stored row measured exactly ``identity`` (model, images, transfer source); unbound rows never do."""
    return bool(row.get("model_sha256")) and row_identity(row) == tuple(identity)


__all__ = ["ATTACK_COLUMNS", "ResultStore", "is_current", "slot_of"]
