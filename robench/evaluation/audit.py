"""``robench audit CHECKPOINT``: can this checkpoint's robust accuracy be trusted?

A robustness number is only worth what the strongest reasonable attack leaves standing
(Carlini et al. 2019). The audit runs the battery of :mod:`robench.evaluation.audit_battery` on a
seeded, class-stratified subset of the test set — the cheap attacks on every image, the expensive
ones (PGD-100 × 5, APGD-CE, APGD-T, FAB-T, Square, transfer) only on the images still standing, as
AutoAttack does — all as ordinary sweep rows in an attacks CSV (so they resume, and the CSV's
``worst`` rows take the per-image worst case over them), then grades seven checks
(:mod:`robench.evaluation.audit_checks`) and writes ``audit.json``:

1. PGD-5's accuracy over the ε grid is monotone; 2. PGD at absolute ε = 0.5 leaves at most chance;
3. the strong white-box attacks break few of the images every cheap attack left; 4. margin and DLR
losses do not beat CE (PGD-5, TGSM-5; APGD-T after APGD-CE); 5. Square, then transfer, break few of
the images every white-box attack left (AutoAttack's own flag); 6. CE input gradients are not zero;
7. the model is deterministic.

The headline robust accuracy is the ``worst`` row at ε_c; the paper-protocol PGD-5 number is
reported beside it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from robench.devices import resolve_device
from robench.errors import RobenchError
from robench.evaluation import audit_checks as checks
from robench.evaluation.audit_battery import (CHEAP, STRONG, AuditConfig, Role, battery, find_transfer_source)
from robench.evaluation.store import ResultStore, is_current
from robench.evaluation.sweep import (SweepSpec, Target, evaluation_images, images_sha256, result_row, sweep_targets)
from robench.evaluation.worst import WORST, attack_label, group_key
from robench.files import atomic_write_json
from robench.models.checkpoints import load_checkpoint
from robench.provenance import environment, utc_now
from robench.results import read_attack_rows, row_identity, row_key

AUDIT_JSON = "audit.json"
__all__ = ["AUDIT_JSON", "AuditConfig", "audit_target", "find_transfer_source", "run_audit"]


def expected_row(spec: SweepSpec, meta: dict, n: int, images: str, eps: float) -> dict:
    """The row ``spec`` writes at ``eps`` (without results), to find it in the CSV."""
    ((name, backend, attack),) = spec.build_attacks()
    return result_row(spec, spec.checkpoints[0], meta, attack, name, backend, eps, n, images)


def accuracy_by_eps(spec: SweepSpec, meta: dict, n: int, rows: dict, images: str) -> dict[float, float]:
    """Accuracy per ε of ``spec``'s current rows in the CSV (as indexed by ``rows``: slot -> row)."""
    found = {}
    for eps in spec.eps_grid:
        want = expected_row(spec, meta, n, images, eps)
        row = rows.get(row_key(want))
        if row is not None and is_current(row, row_identity(want)):
            found[eps] = float(row["accuracy"])
    return found


def run_battery(roles: list[Role], cfg: AuditConfig, target: Target, device, progress: bool) -> list[Role]:
    """Run every role in order, each pruned one (with ``cfg.prune``) only on the survivors of all rows at ε_c
    before it."""
    before: list[str] = []
    ran = []
    for role in roles:
        spec = role.spec if role.stage == CHEAP or not cfg.prune else replace(role.spec, given=tuple(before))
        sweep_targets(spec, [target], device=device, progress=progress)
        ran.append(replace(role, spec=spec))
        if role.name != "large-eps":  # another ε and ε mode: not in ε_c's worst case
            before.append(attack_label(expected_row(spec, target.meta, len(target.y), target.images, cfg.check_eps)))
    return ran


def run_audit(checkpoint: str | Path, cfg: AuditConfig, *, csv: str | Path, out_json: str | Path,
              transfer_from: str | None = None, device: str = "auto", data_dir: str | None = None,
              download: bool = False, progress: bool = True, trust_weights: bool = False,
              trust_code: bool = False) -> dict:
    """Run the battery (resuming rows already in ``csv``), grade the checks, write ``out_json``.

    ``audit.json`` names the model (``model_sha256``) and the images (``images_sha256``) it judged.
    """
    cfg.validate()
    dev = resolve_device(device)
    checkpoint = str(checkpoint)
    model, meta = load_checkpoint(checkpoint, device=dev, verify=not trust_weights, trust_code=trust_code)
    ResultStore(csv).check()  # refuse a damaged or foreign CSV before any work
    source, source_note = (transfer_from, f"crafted on {transfer_from}") if transfer_from else \
        find_transfer_source(checkpoint, meta)
    if source is not None and Path(source).resolve() == Path(checkpoint).resolve():
        source, source_note = None, "the transfer source is this checkpoint (transfer = white-box PGD)"
    probe = SweepSpec(checkpoints=(checkpoint,), attacks=("pgd",), backends=("native",), eps_grid=(0.0,),
                      out=str(csv), n_samples=None, seed=cfg.seed)
    x_all, _ = evaluation_images(meta, probe, data_dir, download)
    n_samples = None if cfg.n_samples is None or cfg.n_samples >= len(x_all) else cfg.n_samples
    x, y = evaluation_images(meta, replace(probe, n_samples=n_samples), data_dir, download)
    return audit_target(Target(checkpoint, model, meta, x, y, images_sha256(x, y)), cfg, csv=csv, out_json=out_json,
                        source=source, source_note=source_note, device=dev, progress=progress)


def audit_target(target: Target, cfg: AuditConfig, *, csv: str | Path, out_json: str | Path | None,
                 source: str | None = None, source_note: str = "no transfer source given",
                 device=None, progress: bool = True) -> dict:
    """The audit of a model and images at hand (:func:`run_audit` without loading them); writes ``out_json`` if
    given and returns the report."""
    cfg.validate()
    dev = device or torch.device("cpu")
    t0, started = time.perf_counter(), utc_now()
    env = environment(dev)  # the code that runs is the code at start
    checkpoint, model, meta, x, y, images = target.name, target.model, target.meta, target.x, target.y, target.images
    roles = run_battery(battery(cfg, checkpoint, str(csv), len(y), meta["num_classes"], source), cfg, target, dev,
                        progress)
    all_rows = read_attack_rows(csv)
    rows = {row_key(r): r for r in all_rows}
    acc = {role.name: accuracy_by_eps(role.spec, meta, len(y), rows, images) for role in roles}
    at = {role: found.get(cfg.check_eps) for role, found in acc.items()}
    missing = [role for role, value in at.items() if value is None and role != "large-eps"]
    if missing or not acc["large-eps"]:
        raise RobenchError(f"audit rows missing from {csv} after the sweep: {', '.join(missing) or 'large-eps'}")
    pruned = [role for role in roles if role.stage != CHEAP]
    store = ResultStore(csv)

    @functools.cache
    def record(role: Role, eps: float = cfg.check_eps) -> torch.Tensor:  # each row's record read once
        return correct_at(store, role, meta, len(y), images, eps)

    survivors = standing_after(roles, record)
    standing = {name: checks.accuracy(correct) for name, correct in survivors.items()}
    names = dict(zip((r.name for r in pruned), (role_name(r.name, cfg) for r in pruned)))
    strong = [r.name for r in pruned if r.stage == STRONG]
    by_name = {role.name: role for role in roles}
    pgd_name, tgsm_name = f"PGD-{cfg.steps}", f"TGSM-{cfg.steps}"
    pairs = [(pgd_name, record(by_name["pgd"]), f"{pgd_name} margin", record(by_name["pgd-margin"])),
             (tgsm_name, record(by_name["tgsm"]), f"{tgsm_name} margin", record(by_name["tgsm-margin"]))]
    pairs += [(pgd_name, record(by_name["pgd"]), f"{pgd_name} DLR", record(by_name["pgd-dlr"]))] \
        if "pgd-dlr" in at else []
    pairs += [(tgsm_name, record(by_name["tgsm"]), f"{tgsm_name} DLR", record(by_name["tgsm-dlr"]))] \
        if "tgsm-dlr" in at else []
    pairs += [("APGD-CE (images still standing)", survivors["apgd-ce"], "APGD-T DLR after it", survivors["apgd-t"])] \
        if "apgd-t" in at else []
    order = ["cheap", *strong] + [r.name for r in pruned if r.stage != STRONG]
    black = [(names[role], standing[order[order.index(role) - 1]], standing[role]) for role in order[len(strong) + 1:]]
    fraction, zero, nonfinite = checks.zero_gradient_fraction(model, x, y, cfg.batch_size, dev)
    results = [checks.check_monotone({eps: record(by_name["pgd"], eps) for eps in acc["pgd"]}),
               checks.check_large_eps(acc["large-eps"][cfg.large_eps], meta["num_classes"], cfg.large_eps, len(y)),
               checks.check_convergence(standing["cheap"], standing[strong[-1]], "every cheap attack",
                                        ", ".join(names[r] for r in strong), len(y)),
               checks.check_attack_loss(pairs),
               checks.check_black_box(black, len(y), "" if source else f"transfer skipped: {source_note}"),
               checks.check_zero_gradient(fraction, zero, nonfinite, len(y)),
               checks.check_deterministic(model, x, cfg.batch_size, dev)]

    group = (checkpoint, meta["model_sha256"], images, "Linf", cfg.eps_mode, cfg.check_eps, len(y), str(cfg.seed))
    worst = next((r for r in all_rows if r["attack"] == WORST and group_key(r) == group), None)
    clean = acc["pgd"].get(0.0)
    statuses = [c.status for c in results]
    verdict = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    report = {
        "checkpoint": checkpoint, **{k: meta.get(k) for k in ("dataset", "model", "loss", "training", "seed")},
        "model_sha256": meta["model_sha256"], "images_sha256": images,
        "csv": str(csv), "n": len(y), "attack_seed": cfg.seed, "eps_mode": cfg.eps_mode,
        "eps_grid": list(roles[0].spec.eps_grid), "eps_check": cfg.check_eps, "clean_accuracy": clean,
        "protocol": {"pgd": at["pgd"], "tgsm": at["tgsm"]},
        "attacks_at_eps_check": {r.name: at[r.name] for r in roles if r.stage == CHEAP and r.name != "large-eps"},
        "pruned": [{"role": r.name, "attack": names[r.name], "stage": r.stage, "images_attacked":
                    round(standing[order[order.index(r.name) - 1]] * len(y)) if cfg.prune else len(y),
                    "images_broken": round((standing[order[order.index(r.name) - 1]] - standing[r.name]) * len(y)),
                    "standing_after": standing[r.name]} for r in pruned],
        "worst": float(worst["accuracy"]) if worst else None, "worst_source": worst["source"] if worst else None,
        "transfer_source": source, "transfer_note": source_note,
        "checks": [c.to_dict() for c in results], "verdict": verdict, "config": asdict(cfg),
        "started_at": started, "finished_at": utc_now(), "seconds": round(time.perf_counter() - t0, 1),
        "environment": env}
    if out_json is not None:
        atomic_write_json(out_json, report)
    return report


def correct_at(store: ResultStore, role: Role, meta: dict, n: int, images: str, eps: float) -> torch.Tensor:
    """The per-image correct flags of ``role``'s row at ``eps``."""
    found = store.record(expected_row(role.spec, meta, n, images, eps))
    if found is None:
        raise RobenchError(f"the audit's {role.name} row at eps {eps:g} has no per-image record in {store.csv}")
    return found[0]


def standing_after(roles: list[Role], record) -> dict[str, torch.Tensor]:
    """The images still standing at ε_c after every cheap attack (``"cheap"``) and after each later role, in
    order: per-image ANDs of the rows' records (``record(role)``; the same with and without pruning)."""
    survived = None
    for role in roles:
        if role.stage == CHEAP and role.name != "large-eps":
            survived = record(role) if survived is None else survived & record(role)
    standing = {"cheap": survived}
    for role in roles:
        if role.stage != CHEAP:
            survived = survived & record(role)
            standing[role.name] = survived
    return standing


def role_name(role: str, cfg: AuditConfig) -> str:
    """A reader's name for a pruned role, e.g. ``pgd-strong`` -> ``PGD-100 x 5 restarts``."""
    return {"pgd-strong": f"PGD-{cfg.strong_steps} x {cfg.strong_restarts} restarts", "apgd-ce": "APGD-CE",
            "apgd-t": "APGD-T", "fab": "FAB-T", "square": f"Square-{cfg.square_queries}",
            "transfer": f"transfer PGD-{cfg.transfer_steps}"}.get(role, role)
