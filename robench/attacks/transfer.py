"""``transfer``: PGD examples crafted on a source checkpoint, evaluated on the attacked model.

A black-box transfer attack (Szegedy et al. 2014; Papernot et al. 2017): the adversarial
images are those of :class:`~robench.attacks.pgd.PGD` (same settings and defaults, but 20
steps) run against the *source* model, a robench run directory (``--transfer-from RUN_DIR``),
and only evaluated on the attacked model, whose gradients are never used. The source must have
the attacked model's number of classes and input shape. It is loaded on first use and cached
per device; loading it does not consume random numbers, so with the attacked model as its own
source and the same seed the images are exactly PGD's.
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii.
"""

from __future__ import annotations

from pathlib import Path

import torch

from robench.attacks.base import Attack, num_classes_of
from robench.attacks.pgd import PGD
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError
from robench.files import file_sha256
from robench.models.checkpoints import load_checkpoint, read_metadata
from robench.models.run_layout import WEIGHTS


@ATTACKS.register("transfer", "native", "transfer attack: PGD crafted on a source checkpoint (--transfer-from), native only")
class Transfer(Attack):
    name = "transfer"
    targeted = False

    def __init__(self, source: str | None = None, steps: int = 20, step_size: float | None = None,
                 restarts: int = 1, loss: str = "ce", random_start: bool = True, norm: str = "Linf"):
        if source is None:
            raise RobenchError("transfer needs a source checkpoint (--transfer-from RUN_DIR)")
        self.pgd = PGD(steps=steps, step_size=step_size, restarts=restarts, loss=loss, random_start=random_start,
                       norm=norm)
        self.source = source
        read_metadata(source)                                   # a missing or foreign source fails here
        weights = Path(source) / WEIGHTS
        self.source_sha256 = file_sha256(weights) if weights.is_file() else None
        self._sources: dict[torch.device, tuple[torch.nn.Module, dict]] = {}

    def settings(self) -> dict:
        return {**self.pgd.settings(), "source": str(self.source), "source_sha256": self.source_sha256}

    def source_model(self, model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
        """The source model on x's device (loaded once per device), checked against the attacked model."""
        if x.device not in self._sources:
            with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: keep our stream
                self._sources[x.device] = load_checkpoint(self.source, device=x.device)
        source, meta = self._sources[x.device]
        diffs = []
        if int(meta["num_classes"]) != num_classes_of(model, x):
            diffs.append(f"{meta['num_classes']} classes vs {num_classes_of(model, x)}")
        if tuple(meta["input_shape"]) != tuple(x.shape[1:]):
            diffs.append(f"input shape {tuple(meta['input_shape'])} vs {tuple(x.shape[1:])}")
        if diffs:
            raise RobenchError(f"transfer source {self.source} does not fit the attacked model: {'; '.join(diffs)}")
        return source

    def __call__(self, model, x, y, eps):
        source = self.source_model(model, x)
        return self.pgd(source, x, y, eps)
