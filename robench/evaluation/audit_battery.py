"""The audit's battery: which attack runs, in which order, on which images.

AutoAttack's rule (Croce & Hein 2020): every image first meets the cheap attacks — the paper's
protocol and its loss variants — and the expensive ones only see the images that survived every
attack before them, in this order:

=========  ======================================================================  ================
stage      attacks (at the checking radius ε_c unless noted)                        images
=========  ======================================================================  ================
cheap      PGD-5 CE over the ε grid (check 1), PGD-5 at absolute ε = 0.5 (check 2),  every image
           TGSM-5 CE, PGD-5 and TGSM-5 with margin and DLR losses (check 4)
strong     PGD-100 × 5 restarts, APGD-CE, APGD-T (DLR, 9 targets), FAB-T (9 targets)  survivors, each
           (check 3; APGD-T over APGD-CE for check 4)                               of all before it
black-box  Square (5,000 queries), then transfer from the cross-entropy model        survivors
           (check 5)
=========  ======================================================================  ================

A pruned row's per-image record marks the images it did not attack (already broken) as broken, so
its accuracy is what still stands after it, and the CSV's ``worst`` row at ε_c — the per-image AND
over everything — equals the last stage's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from robench.checks import check_count, check_seed
from robench.errors import RobenchError
from robench.evaluation.epsilon import check_eps_mode
from robench.evaluation.sweep import SweepSpec
from robench.models.checkpoints import read_metadata
from robench.models.run_layout import WEIGHTS

CHEAP, STRONG, BLACK_BOX = "cheap", "strong", "black-box"


@dataclass(frozen=True)
class Role:
    """One attack of the battery: its name in audit.json, its sweep and its stage."""

    name: str
    spec: SweepSpec
    stage: str


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
    apgd_steps: int = 100              # APGD-CE, APGD-T and FAB-T iterations (AutoAttack's)
    square_queries: int = 5000         # AutoAttack's standard budget
    transfer_steps: int = 20
    prune: bool = True                 # the expensive attacks see only the images still standing

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
            source: str | None) -> list[Role]:
    """The audit's attacks in the order they run; roles whose attack cannot run on this model are left out.

    The pruned roles' ``given`` is filled in by the audit, from the labels of the rows before them.
    """
    base = SweepSpec(checkpoints=(checkpoint,), attacks=("pgd",), backends=("native",), eps_grid=(cfg.check_eps,),
                     out=csv, eps_mode=cfg.eps_mode, steps=cfg.steps, n_samples=n, batch_size=cfg.batch_size,
                     seed=cfg.seed, sweep="independent")
    grid = tuple(sorted({0.0, *cfg.eps_grid, cfg.check_eps}))
    roles = [Role("pgd", replace(base, eps_grid=grid), CHEAP),
             Role("large-eps", replace(base, eps_grid=(cfg.large_eps,), eps_mode="absolute"), CHEAP),
             Role("tgsm", replace(base, attacks=("tgsm",)), CHEAP),
             Role("pgd-margin", replace(base, attack_loss="margin"), CHEAP),
             Role("tgsm-margin", replace(base, attacks=("tgsm",), attack_loss="margin"), CHEAP)]
    if num_classes >= 3:
        roles.append(Role("pgd-dlr", replace(base, attack_loss="dlr"), CHEAP))
    if num_classes >= 4:
        roles.append(Role("tgsm-dlr", replace(base, attacks=("tgsm",), attack_loss="dlr"), CHEAP))
    roles += [Role("pgd-strong", replace(base, steps=cfg.strong_steps, restarts=cfg.strong_restarts), STRONG),
              Role("apgd-ce", replace(base, attacks=("apgd",), steps=cfg.apgd_steps, attack_loss="ce"), STRONG)]
    if num_classes >= 4:
        roles.append(Role("apgd-t", replace(base, attacks=("apgd-t",), steps=cfg.apgd_steps), STRONG))
    roles += [Role("fab", replace(base, attacks=("fab",), steps=cfg.apgd_steps), STRONG),
              Role("square", replace(base, attacks=("square",), steps=cfg.square_queries), BLACK_BOX)]
    if source is not None:
        roles.append(Role("transfer", replace(base, attacks=("transfer",), steps=cfg.transfer_steps, source=source),
                          BLACK_BOX))
    return roles
