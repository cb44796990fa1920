"""ART's versions of ``apgd`` and ``square`` (both L∞ and untargeted), as cross-checks of the native ones.

* ``apgd`` → ``AutoProjectedGradientDescent`` (Croce & Hein 2020, APGD of AutoAttack): sign
  steps whose size starts at η = ``step_size``·ε (default 2, i.e. 2ε as in AutoAttack) and is
  halved at checkpoints where the loss stopped improving, with momentum 0.75. ``steps`` = ART's
  ``max_iter`` (default 100), ``restarts`` = ``nb_random_init`` (default 1; ART always starts
  from a uniform random point in the ε-ball). ``loss``: ``ce`` → ART's "cross_entropy",
  ``dlr`` → "difference_logits_ratio" (needs D ≥ 3 classes). ART rebuilds its own classifier
  around our model with that loss. ART returns, per image, the *last* iterate if it
  misclassifies, else the random start (not AutoAttack's best point seen).
* ``square`` → ``SquareAttack`` (Andriushchenko, Croce, Flammarion & Hein 2020): score-based,
  no gradients; ``steps`` = ``max_iter`` queries (default 1000), ``restarts`` = ``nb_restarts``
  (default 1), p_init = 0.8. ART minimises the margin z_y − max_{j≠y} z_j, so rows record
  attack_loss ``margin``. Each iteration costs three forward passes over the images still
  classified correctly.

ART takes one scalar ε per call for both, so images are grouped by radius and ART is called
once per distinct radius (in relative-ε mode that is once per distinct ‖x‖∞). Both draw their
randomness from numpy, seeded from ``torch.initial_seed()`` (see ``art.py``): reproducible
after ``torch.manual_seed``. Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii.
"""

from __future__ import annotations

import math

import numpy as np

from robench.attacks.art import ArtAttack, art_classifier, by_radius
from robench.attacks.base import check_dlr_classes, check_settings, num_classes_of
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError

APGD_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}  # ours -> ART's loss_type
SQUARE_P_INIT = 0.8


@ATTACKS.register("apgd", "art")
class ArtAPGD(ArtAttack):
    name, targeted = "apgd", False

    def __init__(self, steps: int = 100, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 batch_size: int | None = None):
        check_settings(self.name, steps, step_size, restarts, loss)
        if loss not in APGD_LOSSES:
            raise RobenchError(f"apgd takes attack loss {' or '.join(APGD_LOSSES)}, not {loss!r} "
                               "(ART's APGD has no margin loss)")
        super().__init__(batch_size)
        self.steps, self.restarts, self.loss = steps, restarts, loss
        self.step_size = step_size if step_size is not None else 2.0

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss}

    def generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import AutoProjectedGradientDescent

        if self.loss == "dlr":
            check_dlr_classes(num_classes_of(model, x_t), targeted=False)  # ART indexes the 3rd largest logit
        attack = None
        out = x_np.copy()
        for eps, rows in by_radius(radii):
            if attack is None:  # built once: ART wraps the model in a new classifier with its own loss
                attack = AutoProjectedGradientDescent(
                    art_classifier(model, x_t), norm=np.inf, eps=eps, eps_step=eps * self.step_size,
                    max_iter=self.steps, targeted=False, nb_random_init=self.restarts,
                    batch_size=self.art_batch_size(x_np), loss_type=APGD_LOSSES[self.loss], verbose=False)
            else:
                attack.set_params(eps=eps, eps_step=eps * self.step_size)
            out[rows] = attack.generate(x_np[rows], y=y_np[rows])
        return out


@ATTACKS.register("square", "art")
class ArtSquare(ArtAttack):
    name, targeted = "square", False

    def __init__(self, steps: int = 1000, restarts: int = 1, batch_size: int | None = None):
        check_settings(self.name, steps, None, restarts, "margin")
        super().__init__(batch_size)
        self.steps, self.restarts = steps, restarts

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": self.restarts, "attack_loss": "margin"}

    def generate(self, model, x_np, y_np, radii, x_t):
        from art.attacks.evasion import SquareAttack

        height, width = x_np.shape[2:]
        side = max(round(math.sqrt(SQUARE_P_INIT * height * width)), 1)  # ART's first square
        if side >= min(height, width):
            raise RobenchError(f"square cannot attack {height}x{width} images: ART's first square (side {side}) "
                               "must be smaller than the image")
        classifier = art_classifier(model, x_t)
        out = x_np.copy()
        for eps, rows in by_radius(radii):
            attack = SquareAttack(classifier, norm=np.inf, max_iter=self.steps, eps=eps, p_init=SQUARE_P_INIT,
                                  nb_restarts=self.restarts, batch_size=self.art_batch_size(x_np), verbose=False)
            out[rows] = attack.generate(x_np[rows], y=y_np[rows])
        return out
