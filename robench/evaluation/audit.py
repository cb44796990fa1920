"""``robench audit CHECKPOINT``: can this checkpoint's robust accuracy be trusted?

A robustness number is only worth what the strongest reasonable attack leaves standing
(Carlini et al. 2019). The audit runs a fixed battery of attacks on a seeded, class-stratified
subset of the test set, all as ordinary sweep rows in an attacks CSV (so they resume, and the
CSV's ``worst`` rows take the per-image worst case over them), then grades seven checks
(:mod:`robench.evaluation.audit_checks`) and writes ``audit.json``. The battery, at the checking radius
ε_c (default: the largest ε of the grid), with the paper's protocol as the reference:

* PGD-5 (CE) over the whole ε grid, independently per ε — the paper protocol (check 1);
* PGD-5 at absolute ε = 0.5 (check 2);
* PGD-100 with 5 restarts (check 3);
* PGD-5 and TGSM-5 with margin and DLR losses, TGSM-5 with CE, APGD-CE and APGD-DLR through ART
  (check 4);
* Square (ART, black-box, 1,000 queries) and transfer: PGD-20 crafted on the cross-entropy
  checkpoint of the same dataset and architecture (check 5);
* the input gradient of the CE loss at clean images (check 6) and two forward passes (check 7).

The headline robust accuracy is the ``worst`` row at ε_c; the paper-protocol PGD-5 number is
reported beside it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from robench.checks import check_count, check_seed
from robench.devices import resolve_device
from robench.errors import RobenchError
from robench.evaluation import audit_checks as checks
from robench.evaluation.epsilon import check_eps_mode
from robench.evaluation.store import ResultStore, is_current
from robench.evaluation.sweep import SweepSpec, evaluation_images, images_sha256, result_row, run_sweep
from robench.evaluation.worst import WORST, group_key
from robench.files import atomic_write_json
from robench.models.checkpoints import WEIGHTS, load_checkpoint, read_metadata
from robench.provenance import environment, utc_now
from robench.results import read_attack_rows, row_identity, row_key

AUDIT_JSON = "audit.json"


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings: ``robench audit``'s options, or a recipe's ``[audit]`` table resolved."""

    eps_grid: tuple[float, ...] = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
    eps_mode: str = "relative"
    eps_check: float | None = None     # None: the largest ε of the grid
    n_samples: int | None = 1000       # None or more than the test set: the whole test set
    seed: int = 0
    batch_size: int = 128
    steps: int = 5                     # the paper protocol's PGD/TGSM iterations
    strong_steps: int = 100
    strong_restarts: int = 5
    large_eps: float = 0.5             # absolute
    apgd_steps: int = 100
    square_queries: int = 1000
    transfer_steps: int = 20

    @property
    def check_eps(self) -> float:
        return float(self.eps_check if self.eps_check is not None else max(self.eps_grid))

    def validate(self) -> None:
        """Check every setting before any work; raises :class:`RobenchError` naming the first bad one.

        Seeds follow every command's rule (an integer in 0..2^63-1), counts are integers in 1..2^63-1,
        and every ε is a finite number (the grid's >= 0, the checking and large ε > 0).
        """
        check_eps_mode(self.eps_mode)
        inf = float("inf")
        finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and -inf < v < inf  # noqa: E731
        if not self.eps_grid or not all(finite(e) and e >= 0 for e in self.eps_grid):
            raise RobenchError(f"audit: --eps-grid values must be finite and >= 0, got {list(self.eps_grid)}")
        for flag, value in (("--eps-check", self.eps_check), ("large_eps", self.large_eps)):
            if value is not None and not (finite(value) and value > 0):
                raise RobenchError(f"audit: {flag} must be a finite number > 0, got {value!r}")
        if self.check_eps <= 0:
            raise RobenchError("the audit needs a positive checking eps: give --eps-check or a grid with eps > 0")
        counts = [(name, getattr(self, name)) for name in ("steps", "strong_steps", "strong_restarts", "apgd_steps",
                                                           "square_queries", "transfer_steps", "batch_size")]
        counts += [("n_samples", self.n_samples)] if self.n_samples is not None else []
        for name, value in counts:
            check_count(value, "audit: --" + name.replace("_", "-"))
        check_seed(self.seed)


def find_transfer_source(checkpoint: str | Path, meta: dict) -> tuple[str | None, str]:
    """The cross-entropy run of the same dataset and model: (path or None, why)."""
    checkpoint = Path(checkpoint)
    if meta.get("loss") == "ce" and meta.get("training", "regular") == "regular":
        return None, "this is the cross-entropy model itself (transfer = white-box PGD)"
    candidates = []
    parent = (meta.get("parent") or {}).get("path")
    if parent and Path(parent).is_dir():
        candidates.append(Path(parent))
    if checkpoint.parent.is_dir():
        candidates += sorted(p for p in checkpoint.parent.iterdir() if p.is_dir() and p != checkpoint)
    for path in candidates:
        try:
            other = read_metadata(path)
        except RobenchError:
            continue
        same = all(other.get(k) == meta.get(k) for k in ("dataset", "dataset_options", "model", "num_classes",
                                                          "input_shape"))
        if same and other.get("loss") == "ce" and other.get("training", "regular") == "regular" and \
                other.get("seed") == meta.get("seed") and (path / WEIGHTS).is_file():
            return str(path), f"crafted on {path}"
    return None, "no cross-entropy checkpoint of this dataset and model found beside it; pass --transfer-from"


def battery(cfg: AuditConfig, checkpoint: str, csv: str, n: int | None, num_classes: int,
            source: str | None) -> dict[str, SweepSpec]:
    """The audit's sweeps by role; roles whose attack cannot run on this model are left out."""
    e = (cfg.check_eps,)
    base = SweepSpec(checkpoints=(checkpoint,), attacks=("pgd",), backends=("native",), eps_grid=e, out=csv,
                     eps_mode=cfg.eps_mode, steps=cfg.steps, n_samples=n, batch_size=cfg.batch_size, seed=cfg.seed,
                     sweep="independent")
    grid = tuple(sorted({0.0, *cfg.eps_grid, cfg.check_eps}))
    specs = {"pgd": replace(base, eps_grid=grid),
             "large-eps": replace(base, eps_grid=(cfg.large_eps,), eps_mode="absolute"),
             "pgd-strong": replace(base, steps=cfg.strong_steps, restarts=cfg.strong_restarts),
             "pgd-margin": replace(base, attack_loss="margin"),
             "tgsm": replace(base, attacks=("tgsm",)),
             "tgsm-margin": replace(base, attacks=("tgsm",), attack_loss="margin"),
             "apgd-ce": replace(base, attacks=("apgd",), backends=("art",), steps=cfg.apgd_steps),
             "square": replace(base, attacks=("square",), backends=("art",), steps=cfg.square_queries)}
    if num_classes >= 3:
        specs["pgd-dlr"] = replace(base, attack_loss="dlr")
        specs["apgd-dlr"] = replace(base, attacks=("apgd",), backends=("art",), steps=cfg.apgd_steps,
                                    attack_loss="dlr")
    if num_classes >= 4:
        specs["tgsm-dlr"] = replace(base, attacks=("tgsm",), attack_loss="dlr")
    if source is not None:
        specs["transfer"] = replace(base, attacks=("transfer",), steps=cfg.transfer_steps, source=source)
    return specs


def accuracy_by_eps(spec: SweepSpec, meta: dict, n: int, rows: dict, images: str) -> dict[float, float]:
    """Accuracy per ε of ``spec``'s current rows in the CSV (as indexed by ``rows``: slot -> row)."""
    ((name, backend, attack),) = spec.build_attacks()
    found = {}
    for eps in spec.eps_grid:
        want = result_row(spec, spec.checkpoints[0], meta, attack, name, backend, eps, n, images)
        row = rows.get(row_key(want))
        if row is not None and is_current(row, row_identity(want)):
            found[eps] = float(row["accuracy"])
    return found


def run_audit(checkpoint: str | Path, cfg: AuditConfig, *, csv: str | Path, out_json: str | Path,
              transfer_from: str | None = None, device: str = "auto", data_dir: str | None = None,
              download: bool = False, progress: bool = True, trust_weights: bool = False) -> dict:
    """Run the battery (resuming rows already in ``csv``), grade the checks, write ``out_json``.

    ``audit.json`` names the model (``model_sha256``) and the images (``images_sha256``) it judged.
    """
    cfg.validate()
    t0, started = time.perf_counter(), utc_now()
    dev = resolve_device(device)
    env = environment(dev)  # the code that runs is the code at start
    checkpoint = str(checkpoint)
    model, meta = load_checkpoint(checkpoint, device=dev, verify=not trust_weights)
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
    images = images_sha256(x, y)
    specs = {role: replace(spec, trust_weights=trust_weights) for role, spec in
             battery(cfg, checkpoint, str(csv), n_samples, meta["num_classes"], source).items()}
    for role, spec in specs.items():
        run_sweep(spec, device=device, data_dir=data_dir, download=download, progress=progress)
    all_rows = read_attack_rows(csv)
    rows = {row_key(r): r for r in all_rows}
    acc = {role: accuracy_by_eps(spec, meta, len(y), rows, images) for role, spec in specs.items()}
    at = {role: found.get(cfg.check_eps) for role, found in acc.items()}
    missing = [role for role, value in at.items() if value is None and role not in ("large-eps",)]
    if missing or not acc["large-eps"]:
        raise RobenchError(f"audit rows missing from {csv} after the sweep: {', '.join(missing) or 'large-eps'}")

    pgd_name, strong_name = f"PGD-{cfg.steps}", f"PGD-{cfg.strong_steps} x {cfg.strong_restarts} restarts"
    pairs = [(pgd_name, at["pgd"], f"{pgd_name} margin", at["pgd-margin"]),
             (f"TGSM-{cfg.steps}", at["tgsm"], f"TGSM-{cfg.steps} margin", at["tgsm-margin"])]
    if "pgd-dlr" in at:
        pairs += [(pgd_name, at["pgd"], f"{pgd_name} DLR", at["pgd-dlr"]),
                  ("APGD-CE", at["apgd-ce"], "APGD-DLR", at["apgd-dlr"])]
    if "tgsm-dlr" in at:
        pairs.append((f"TGSM-{cfg.steps}", at["tgsm"], f"TGSM-{cfg.steps} DLR", at["tgsm-dlr"]))
    white_name, white = min(((pgd_name, at["pgd"]), (strong_name, at["pgd-strong"])), key=lambda p: p[1])
    black = [(f"Square-{cfg.square_queries}", at["square"])]
    if "transfer" in at:
        black.append((f"transfer PGD-{cfg.transfer_steps}", at["transfer"]))
    fraction, zero, nonfinite = checks.zero_gradient_fraction(model, x, y, cfg.batch_size, dev)
    results = [checks.check_monotone(acc["pgd"]),
               checks.check_large_eps(acc["large-eps"][cfg.large_eps], meta["num_classes"], cfg.large_eps),
               checks.check_convergence(at["pgd"], at["pgd-strong"], pgd_name, strong_name),
               checks.check_attack_loss(pairs),
               checks.check_black_box(white_name, white, black, "" if source else f"transfer skipped: {source_note}"),
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
        "eps_grid": list(specs["pgd"].eps_grid), "eps_check": cfg.check_eps, "clean_accuracy": clean,
        "protocol": {"pgd": at["pgd"], "tgsm": at["tgsm"]},
        "attacks_at_eps_check": {role: value for role, value in at.items() if role != "large-eps"},
        "worst": float(worst["accuracy"]) if worst else None, "worst_source": worst["source"] if worst else None,
        "transfer_source": source, "transfer_note": source_note,
        "checks": [c.to_dict() for c in results], "verdict": verdict, "config": asdict(cfg),
        "started_at": started, "finished_at": utc_now(), "seconds": round(time.perf_counter() - t0, 1),
        "environment": env}
    atomic_write_json(out_json, report)
    return report
