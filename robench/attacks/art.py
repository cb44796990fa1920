"""The same attacks through the Adversarial Robustness Toolbox (ART), for cross-checking.

A ``PyTorchClassifier`` is built around the checkpoint's model (clip values (0, 1)), and:

* ``pgd``  → ``ProjectedGradientDescent(norm=inf)`` with per-image ε as ART's array ε and
  ``eps_step`` = step_size·ε; random start ⇔ ``num_random_init = restarts`` (0 without it).
  ART 1.20's random initialisation fails on an array ε, so with random start the images are
  grouped by radius and ART is called once per distinct radius with a scalar ε.
* ``tgsm`` → ``BasicIterativeMethod(targeted=True)`` at t = (y + 1) mod D, ``eps_step`` = ε/steps.
* ``jsma`` → ``SaliencyMapMethod``. ART's JSMA differs from ours: it changes *two* features
  per iteration, ranks pairs by the target gradient, may raise a feature more than once, and
  is bounded by γ (the fraction of features it may change), not by a number of steps. We set
  θ = the image's absolute ε (ART takes one θ per call, so images are grouped by radius) and
  γ = min(1, steps / number of features), the same feature budget as ``steps`` one-pixel
  iterations; ART's output is then projected onto the ε-ball (a feature raised twice would
  leave it). Rows say ``backend = art``. Because ART only stops raising a feature once it
  reaches 1, its number of iterations, and time, grows like 1/θ: at small ε it is very slow.

ART needs positive radii: images with ε = 0 are returned unchanged without calling ART.
The attack losses ``margin`` and ``dlr`` are passed to ART as the classifier's loss
(:class:`ObjectiveLoss`, the untargeted ``attack_objective``): ART ascends it for untargeted
attacks, so ``pgd`` ascends the margin or the DLR; for targeted ones ART descends it, which
with ``margin`` at the target t is ascending z_t − max_{j≠t} z_j. ART's loss sees only the
labels it is given (the targets), so the targeted DLR, which needs the true label too, has no
ART version: ``tgsm`` with ``dlr`` runs natively only.

ART draws its random starts from numpy's global generator: every ART attack seeds numpy (and
torch) from ``torch.initial_seed()`` for the duration of the call and restores both after, so
``torch.manual_seed(s)`` before an attack makes its ART run reproducible too.
``apgd`` and ``square`` (ART only) live in ``art_adaptive.py``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from robench.attacks.base import (Attack, attack_objective, check_dlr_classes, check_settings, num_classes_of,
                                   per_image, project, target_labels)
from robench.attacks.registry import ATTACKS
from robench.checks import check_count
from robench.errors import RobenchError


class ObjectiveLoss(nn.Module):
    """The untargeted ``attack_objective`` (``margin``: max_{j≠label} z_j − z_label, or ``dlr``) as an ART loss.

    Accepts index or one-hot labels (ART passes one-hot); ``reduction`` is "mean" (default),
    "sum" or "none", which ART sets when it asks for per-image losses.
    """

    def __init__(self, loss: str, reduction: str = "mean"):
        super().__init__()
        self.loss, self.reduction = loss, reduction

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() == 2:
            labels = labels.argmax(1)
        value = attack_objective(z, labels.long(), self.loss, targeted=False)
        if self.reduction == "mean":
            return value.mean()
        return value.sum() if self.reduction == "sum" else value


def art_classifier(model: nn.Module, x: torch.Tensor, loss: str = "ce"):
    """ART's ``PyTorchClassifier`` around ``model`` (logits, images in [0, 1]) with the given attack loss."""
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss() if loss == "ce" else ObjectiveLoss(loss),
        input_shape=tuple(x.shape[1:]), nb_classes=num_classes_of(model, x), clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu")


@contextmanager
def seeded_from_torch(device: torch.device) -> Iterator[None]:
    """Seed numpy's global generator (ART's source of randomness) and torch from ``torch.initial_seed()``.

    Both generators are restored on exit, so an ART call has no effect on later random draws.
    """
    seed = torch.initial_seed() % 2**32
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.random.default_generator.manual_seed(seed)
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


def by_radius(radii: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
    """(radius, row indices) for each distinct radius: for ART attacks that take one scalar ε per call."""
    for eps in np.unique(radii):
        yield float(eps), np.flatnonzero(radii == eps)


class ArtAttack(Attack):
    backend = "art"

    def __init__(self, batch_size: int | None = None):
        self.batch_size = batch_size

    def art_batch_size(self, x_np: np.ndarray) -> int:
        """ART's batch size: the one given, else every image of the call at once (the sweep batches already)."""
        return self.batch_size or max(len(x_np), 1)

    def __call__(self, model, x, y, eps):
        out = x.clone()
        moving = (eps > 0).to(x.device)
        if not bool(moving.any()):
            return out
        idx = moving.nonzero().flatten()
        xs, ys, radii = x[idx], y[idx], eps.to(x.device)[idx]
        with seeded_from_torch(x.device):
            adv = self.generate(model, xs.detach().cpu().numpy(), ys.cpu().numpy(), radii.cpu().numpy(), xs)
        adv = torch.from_numpy(adv).to(device=x.device, dtype=x.dtype)
        out[idx] = project(adv, xs, per_image(radii, xs))
        return out

    @abstractmethod
    def generate(self, model, x_np, y_np, radii, x_t) -> np.ndarray:
        """ART's adversarial images for numpy images, labels and positive radii (N,)."""


@ATTACKS.register("pgd", "art")
class ArtPGD(ArtAttack):
    name, targeted = "pgd", False

    def __init__(self, steps: int = 5, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 random_start: bool = True, batch_size: int | None = None):
        check_settings(self.name, steps, step_size, restarts, loss)
        super().__init__(batch_size)
        self.steps, self.restarts, self.loss, self.random_start = steps, restarts, loss, random_start
        self.step_size = step_size if step_size is not None else 2.5 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss}

    def generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import ProjectedGradientDescent

        if self.loss == "dlr":
            check_dlr_classes(num_classes_of(model, x_t), targeted=False)
        classifier = art_classifier(model, x_t, self.loss)

        def run(x_part, y_part, eps):
            attack = ProjectedGradientDescent(
                classifier, norm=np.inf, eps=eps, eps_step=eps * self.step_size, max_iter=self.steps,
                targeted=False, num_random_init=self.restarts if self.random_start else 0,
                batch_size=self.art_batch_size(x_np), verbose=False)
            return attack.generate(x_part, y=y_part)

        if not self.random_start:
            return run(x_np, y_np, radii.astype(np.float32).reshape(-1, *([1] * (x_np.ndim - 1))))
        # ART 1.20's random initialisation cannot broadcast an array ε: one call per distinct radius
        out = x_np.copy()
        for eps, rows in by_radius(radii):
            out[rows] = run(x_np[rows], y_np[rows], eps)
        return out


@ATTACKS.register("tgsm", "art")
class ArtTGSM(ArtAttack):
    name, targeted = "tgsm", True

    def __init__(self, steps: int = 5, step_size: float | None = None, loss: str = "ce", batch_size: int | None = None):
        check_settings(self.name, steps, step_size, 1, loss)
        if loss == "dlr":
            raise RobenchError("tgsm with attack loss dlr runs natively only (ART's loss does not see the true label)")
        super().__init__(batch_size)
        self.steps, self.loss = steps, loss
        self.step_size = step_size if step_size is not None else 1.0 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": 1, "attack_loss": self.loss}

    def generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import BasicIterativeMethod

        eps = radii.astype(np.float32).reshape(-1, *([1] * (x_np.ndim - 1)))
        targets = target_labels(torch.from_numpy(y_np), num_classes_of(model, x_t)).numpy()
        attack = BasicIterativeMethod(art_classifier(model, x_t, self.loss), eps=eps, eps_step=eps * self.step_size,
                                      max_iter=self.steps, targeted=True, batch_size=self.art_batch_size(x_np), verbose=False)
        return attack.generate(x_np, y=targets)


@ATTACKS.register("jsma", "art")
class ArtJSMA(ArtAttack):
    name, targeted = "jsma", True

    def __init__(self, steps: int = 200, batch_size: int | None = None):
        check_count(steps, "jsma: --steps")
        super().__init__(batch_size)
        self.steps = steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": 1, "attack_loss": "saliency"}

    def generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import SaliencyMapMethod

        classifier = art_classifier(model, x_t)
        targets = target_labels(torch.from_numpy(y_np), num_classes_of(model, x_t)).numpy()
        gamma = min(1.0, self.steps / float(np.prod(x_np.shape[1:])))
        out = x_np.copy()
        for theta, rows in by_radius(radii):
            attack = SaliencyMapMethod(classifier, theta=theta, gamma=gamma, batch_size=self.art_batch_size(x_np),
                                       verbose=False)
            out[rows] = attack.generate(x_np[rows], y=targets[rows])
        return out
