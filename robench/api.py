"""robench from Python: attack, sweep and audit any ``nn.Module`` on tensors, with tidy rows as a DataFrame.

Every function takes a model mapping images x (B, C, H, W) in [0, 1] to logits (B, D), labels y (B,),
and ε as a number or a per-image tensor (B,) of absolute radii in the norm (``Linf`` or ``L2``,
RobustBench's names)::

    import robench
    x_adv = robench.attack(model, x, y, eps=8 / 255, name="apgd")                 # adversarial images
    rows = robench.evaluate(model, x, y, attacks=("pgd", "apgd"), eps=(0, 4 / 255, 8 / 255))
    report, rows = robench.audit(model, x, y, eps=8 / 255)                        # seven checks + rows
    model, meta = robench.load_checkpoint("runs/fm-gccs")

``evaluate`` and ``audit`` keep their rows in a result store like ``robench attack`` does (give
``out="results/mine.csv"`` to keep and resume them; by default a temporary one), and every row names
the model (the SHA-256 of its state dict and class) and the images it measured.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from robench.attacks import build_attack
from robench.attacks.base import num_classes_of
from robench.evaluation.audit import AuditConfig, audit_target
from robench.evaluation.sweep import SweepSpec, Target, images_sha256, sweep_targets
from robench.results import read_attack_rows

__all__ = ["attack", "audit", "evaluate", "model_sha256"]


def radii(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ε as a per-image tensor (B,) on x's device: a number is repeated for every image."""
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return eps.expand(len(x)).clone() if eps.dim() == 0 else eps


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, *, name: str = "pgd",
           norm: str | None = None, backend: str = "native", **settings) -> torch.Tensor:
    """Adversarial images (B, C, H, W) of attack ``name`` against ``model`` for (x, y), within ε in ``norm``.

    ``settings`` are the attack's own (``steps``, ``restarts``, ``loss``, ...; see ``robench list attacks``);
    one it does not take is an error. The model is put in eval mode. Example::

        x_adv = robench.attack(model, x, y, 0.5, name="pgd", norm="L2", steps=20)
    """
    model.eval()
    return build_attack(name, backend, norm=norm, **settings)(model, x, y, radii(eps, x))


def model_sha256(model: nn.Module) -> str:
    """An in-memory model's identity: SHA-256 over its class and its state dict (names, shapes, values)."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def target(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str) -> Target:
    model.eval()
    meta = {"dataset": "tensors", "model": type(model).__name__, "loss": "unknown", "training": "user", "seed": None,
            "num_classes": num_classes_of(model, x), "model_sha256": model_sha256(model)}
    return Target(name, model, meta, x, y, images_sha256(x, y))


def frame(csv: Path) -> pd.DataFrame:
    """The attacks CSV as a DataFrame with numbers as numbers."""
    rows = pd.DataFrame(read_attack_rows(csv))
    for column in ("eps", "n", "n_correct", "accuracy", "target_success", "seconds", "steps", "restarts"):
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return rows


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attacks: tuple[str, ...] = ("pgd",),
             eps: tuple[float, ...] = (0.0, 8 / 255), norm: str | None = None, eps_mode: str = "absolute",
             sweep: str = "independent", seed: int = 0, batch_size: int = 128, out: str | Path | None = None,
             name: str = "model", device: str | torch.device = "cpu", **settings) -> pd.DataFrame:
    """Accuracy of ``model`` under each attack at each ε: the tidy rows of ``robench attack`` (with the ``worst``
    row per ε: an image counts as robust only if it withstood every attack), as a DataFrame.

    ``eps_mode="relative"`` is the paper's ‖n‖ ≤ ε·‖x‖; the default ``absolute`` is every peer's. ``settings``
    go to every attack (``steps``, ``loss``, ...). Example::

        rows = robench.evaluate(model, x, y, attacks=("pgd", "apgd"), eps=(0, 0.25, 0.5), norm="L2")
        rows.pivot_table(index="eps", columns="attack", values="accuracy")
    """
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(out) if out is not None else Path(tmp) / "attacks.csv"
        spec = SweepSpec(checkpoints=(name,), attacks=tuple(attacks), eps_grid=tuple(float(e) for e in eps),
                         out=str(csv), eps_mode=eps_mode, norm=norm, sweep=sweep, seed=seed, batch_size=batch_size,
                         steps=settings.pop("steps", None), step_size=settings.pop("step_size", None),
                         restarts=settings.pop("restarts", None), attack_loss=settings.pop("loss", None))
        if settings:
            raise TypeError(f"evaluate() got unexpected settings: {', '.join(settings)}")
        sweep_targets(spec, [target(model, x.to(device), y.to(device), name)], device=torch.device(device),
                      progress=False)
        return frame(csv)


def audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255, eps_mode: str = "absolute",
          out: str | Path | None = None, name: str = "model", device: str | torch.device = "cpu",
          **config) -> tuple[dict, pd.DataFrame]:
    """``robench audit`` on a model and tensors: (the report with its seven checks and verdict, the rows).

    The monotonicity grid is (0, ε/2, ε) and every check is measured at ε; ``config`` sets any other
    :class:`robench.evaluation.audit.AuditConfig` field (``strong_steps``, ``square_queries``, ``prune``, ...).
    Example::

        report, rows = robench.audit(model, x, y, eps=0.1, square_queries=1000)
        report["verdict"], report["worst"]
    """
    cfg = AuditConfig(eps_grid=(0.0, eps / 2, eps), eps_mode=eps_mode, eps_check=eps, n_samples=None, **config)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(out) if out is not None else Path(tmp) / "audit.csv"
        report = audit_target(target(model, x.to(device), y.to(device), name), cfg, csv=csv, out_json=None,
                              device=torch.device(device), progress=False)
        return report, frame(csv)
