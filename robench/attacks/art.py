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
The attack loss ``margin`` is passed to ART as the classifier's loss; with it ART's
untargeted ascent and targeted descent both use max_{j≠label} z_j − z_label.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch
from torch import nn

from robench.attacks.base import Attack, check_settings, num_classes_of, per_image, project, target_labels
from robench.errors import RobenchError


class MarginLoss(nn.Module):
    """max_{j≠label} z_j − z_label, averaged; accepts index or one-hot labels (ART passes one-hot)."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() == 2:
            labels = labels.argmax(1)
        labels = labels.long()
        own = z.gather(1, labels[:, None])[:, 0]
        others = z.masked_fill(nn.functional.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(1)
        return (others - own).mean()


def art_classifier(model: nn.Module, x: torch.Tensor, loss: str = "ce"):
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss() if loss == "ce" else MarginLoss(), input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes_of(model, x), clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu")


class _ArtAttack(Attack):
    backend = "art"

    def __init__(self, batch_size: int = 128):
        self.batch_size = batch_size

    def __call__(self, model, x, y, eps):
        out = x.clone()
        moving = (eps > 0).to(x.device)
        if not bool(moving.any()):
            return out
        idx = moving.nonzero().flatten()
        xs, ys, radii = x[idx], y[idx], eps.to(x.device)[idx]
        adv = self._generate(model, xs.detach().cpu().numpy(), ys.cpu().numpy(), radii.cpu().numpy(), xs)
        adv = torch.from_numpy(adv).to(device=x.device, dtype=x.dtype)
        out[idx] = project(adv, xs, per_image(radii, xs))
        return out

    @abstractmethod
    def _generate(self, model, x_np, y_np, radii, x_t) -> np.ndarray:
        """ART's adversarial images for numpy images, labels and positive radii (N,)."""


class ArtPGD(_ArtAttack):
    name, targeted = "pgd", False

    def __init__(self, steps: int = 5, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 random_start: bool = True, batch_size: int = 128):
        check_settings(self.name, steps, step_size, restarts, loss)
        super().__init__(batch_size)
        self.steps, self.restarts, self.loss, self.random_start = steps, restarts, loss, random_start
        self.step_size = step_size if step_size is not None else 2.5 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss}

    def _generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import ProjectedGradientDescent

        classifier = art_classifier(model, x_t, self.loss)

        def run(x_part, y_part, eps):
            attack = ProjectedGradientDescent(
                classifier, norm=np.inf, eps=eps, eps_step=eps * self.step_size, max_iter=self.steps,
                targeted=False, num_random_init=self.restarts if self.random_start else 0,
                batch_size=self.batch_size, verbose=False)
            return attack.generate(x_part, y=y_part)

        if not self.random_start:
            return run(x_np, y_np, radii.astype(np.float32).reshape(-1, *([1] * (x_np.ndim - 1))))
        # ART 1.20's random initialisation cannot broadcast an array ε: one call per distinct radius
        out = x_np.copy()
        for eps in np.unique(radii):
            rows = np.flatnonzero(radii == eps)
            out[rows] = run(x_np[rows], y_np[rows], float(eps))
        return out


class ArtTGSM(_ArtAttack):
    name, targeted = "tgsm", True

    def __init__(self, steps: int = 5, step_size: float | None = None, loss: str = "ce", batch_size: int = 128):
        check_settings(self.name, steps, step_size, 1, loss)
        super().__init__(batch_size)
        self.steps, self.loss = steps, loss
        self.step_size = step_size if step_size is not None else 1.0 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": 1, "attack_loss": self.loss}

    def _generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import BasicIterativeMethod

        eps = radii.astype(np.float32).reshape(-1, *([1] * (x_np.ndim - 1)))
        targets = target_labels(torch.from_numpy(y_np), num_classes_of(model, x_t)).numpy()
        attack = BasicIterativeMethod(art_classifier(model, x_t, self.loss), eps=eps, eps_step=eps * self.step_size,
                                      max_iter=self.steps, targeted=True, batch_size=self.batch_size, verbose=False)
        return attack.generate(x_np, y=targets)


class ArtJSMA(_ArtAttack):
    name, targeted = "jsma", True

    def __init__(self, steps: int = 200, batch_size: int = 128):
        if steps < 1:
            raise RobenchError(f"jsma: --steps must be at least 1, got {steps}")
        super().__init__(batch_size)
        self.steps = steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": 1, "attack_loss": "saliency"}

    def _generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import SaliencyMapMethod

        classifier = art_classifier(model, x_t)
        targets = target_labels(torch.from_numpy(y_np), num_classes_of(model, x_t)).numpy()
        gamma = min(1.0, self.steps / float(np.prod(x_np.shape[1:])))
        out = x_np.copy()
        for theta in np.unique(radii):
            rows = np.flatnonzero(radii == theta)
            attack = SaliencyMapMethod(classifier, theta=float(theta), gamma=gamma, batch_size=self.batch_size,
                                       verbose=False)
            out[rows] = attack.generate(x_np[rows], y=targets[rows])
        return out


ART_ATTACKS: dict[str, type[_ArtAttack]] = {"pgd": ArtPGD, "tgsm": ArtTGSM, "jsma": ArtJSMA}
