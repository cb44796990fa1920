"""Staging folders: how concurrent jobs add rows to one attacks CSV without losing or mixing any.

Under ``robench run --executor ray`` several tasks attack at once, possibly on other nodes of a
shared filesystem, where SQLite's locks cannot be trusted. So every sweep or audit task works in
its own folder ``<results>/.staging/<job>/`` with a store of its own: :func:`stage` starts it with
the main store's rows of the job's checkpoint and their per-image records (rows already done are
skipped, stale ones redone, cumulative sweeps resume, the audit reuses protocol rows and takes the
same worst case as it would locally). The driver, the only writer of the main store, then calls
:func:`merge_staged`: the job's new and replaced rows go into the main store in one transaction
(which rewrites the CSV, worst rows included, in its canonical order), an audit's ``audit.json``
is moved to its place, and the folder is removed. Each step can be repeated, so a merge cut short
(or a folder left by a killed driver) is finished by :func:`merge_leftovers` at the next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from robench.evaluation.audit import AUDIT_JSON
from robench.evaluation.store import ResultStore, slot_of
from robench.pipeline.plan import Plan

STAGING = ".staging"


def stage(csv: Path, staged: Path, checkpoint: str) -> None:
    """Start a staging store (and its CSV ``staged``) with ``csv``'s rows of ``checkpoint`` and their records.

    A staging folder whose CSV exists is complete and kept: a re-run after a worker died continues
    from its rows.
    """
    if staged.exists():
        return
    items = [(row, record) for row, record in ResultStore(csv).items() if row["checkpoint"] == checkpoint]
    ResultStore(staged).put_many(items)  # one transaction; the CSV, written last, says the folder is complete


def merge_staged(folder: Path, results_dir: Path, out_json: Path | None = None) -> int:
    """Store a job's new and replaced rows (with per-image records) in the results' store in one transaction,
    move its audit.json into place and remove the folder; returns how many rows it added or replaced.

    Idempotent, so a merge cut short is finished by the next run.
    """
    changed = 0
    for staged in sorted(folder.glob("*.csv")):
        main = ResultStore(results_dir / staged.name)
        have = {slot_of(row): row for row in main.rows()}
        new = [(row, record) for row, record in ResultStore(staged).items() if have.get(slot_of(row)) != row]
        if new:
            main.put_many(new)
        changed += len(new)
    if out_json is not None and (folder / AUDIT_JSON).exists():
        out_json.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / AUDIT_JSON, out_json)
    shutil.rmtree(folder)
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()
    return changed


def merge_leftovers(plan: Plan) -> None:
    """Merge staging folders a killed driver left behind (their audit.json only if the plan still has it)."""
    staging = plan.results_dir / STAGING
    if staging.is_dir():
        targets = {f"audit-{a.run.name}": a.out_json for a in plan.audits}
        for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
            merge_staged(folder, plan.results_dir, targets.get(folder.name))
