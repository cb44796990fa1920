"""Staging folders: how concurrent jobs add rows to one attacks CSV without losing or mixing any.

Under ``robench run --executor ray`` several tasks attack at once, and each sweep rewrites its CSV
as rows finish; two tasks rewriting one file would drop each other's rows. So every sweep or audit
task works in its own folder ``<results>/.staging/<job>/``: :func:`stage` starts it with the main
CSV's rows of the job's checkpoint and their per-image records (rows already done are skipped,
cumulative sweeps resume, the audit reuses protocol rows and takes the same worst case as it would
locally), and the task appends there. The driver, the only writer of the main CSV, then calls
:func:`merge_staged`: per-image records are moved into place first, the new rows are appended in
one atomic rewrite, ``worst`` rows are recomputed, an audit's ``audit.json`` is moved to its place,
and the folder is removed. Each step can be repeated, so a merge cut short (or a folder left by a
killed driver) is finished by :func:`merge_leftovers` at the next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from robench.evaluation.audit import AUDIT_JSON
from robench.evaluation.worst import WORST, update_worst_rows
from robench.pipeline.plan import Plan
from robench.results import per_image_path, read_attack_rows, row_key, write_attack_rows

STAGING = ".staging"


def stage(csv: Path, staged: Path, checkpoint: str) -> None:
    """Start a staging CSV with ``csv``'s rows of ``checkpoint`` and their per-image records.

    A staging CSV that exists is kept: a re-run after a worker died continues from its rows.
    """
    if staged.exists():
        return
    rows = [r for r in read_attack_rows(csv) if r["checkpoint"] == checkpoint and r["attack"] != WORST]
    for row in rows:
        if per_image_path(csv, row).exists():
            per_image_path(staged, row).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(per_image_path(csv, row), per_image_path(staged, row))
    write_attack_rows(staged, rows)  # last: its existence says the folder is complete


def merge_staged(folder: Path, results_dir: Path, out_json: Path | None = None) -> dict[Path, list[tuple]]:
    """Move a job's new rows (with per-image records) and its audit.json into place; returns the new rows' keys.

    Idempotent, so a merge cut short is finished by the next run; the folder is removed at the end.
    """
    added = {}
    for staged in sorted(folder.glob("*.csv")):
        csv = results_dir / staged.name
        rows = read_attack_rows(csv)
        have = {row_key(r) for r in rows}
        new = [r for r in read_attack_rows(staged) if r["attack"] != WORST and row_key(r) not in have]
        for row in new:
            if per_image_path(staged, row).exists():
                per_image_path(csv, row).parent.mkdir(parents=True, exist_ok=True)
                os.replace(per_image_path(staged, row), per_image_path(csv, row))
        if new:
            write_attack_rows(csv, rows + new)
            update_worst_rows(csv)
        added[csv] = [row_key(r) for r in new]
    if out_json is not None and (folder / AUDIT_JSON).exists():
        out_json.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / AUDIT_JSON, out_json)
    shutil.rmtree(folder)
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()
    return added


def order_rows(csv: Path, keys: list[tuple]) -> None:
    """Move the rows with ``keys`` behind the others, in the order given, ``worst`` rows last.

    Given the rows of a plan's jobs in plan order, this is the order the local executor, running
    the jobs one after another, writes them in.
    """
    rows, wanted = read_attack_rows(csv), set(keys)
    picked = {row_key(r): r for r in rows if r["attack"] != WORST and row_key(r) in wanted}
    ordered = [r for r in rows if r["attack"] != WORST and row_key(r) not in picked]
    ordered += [picked[k] for k in keys if k in picked] + [r for r in rows if r["attack"] == WORST]
    if ordered != rows:
        write_attack_rows(csv, ordered)


def merge_leftovers(plan: Plan) -> None:
    """Merge staging folders a killed driver left behind (their audit.json only if the plan still has it)."""
    staging = plan.results_dir / STAGING
    if staging.is_dir():
        targets = {f"audit-{a.run.name}": a.out_json for a in plan.audits}
        for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
            merge_staged(folder, plan.results_dir, targets.get(folder.name))
