"""``tgsm``: targeted iterative FGSM (Kurakin, Goodfellow & Bengio 2016), L∞.

Target t = (y + 1) mod D (the paper's rule); ``steps`` (default 5) times
x ← Π_{B∞(x, ε) ∩ [0,1]}(x − α·sign ∇ₓ CE(z(x), t)) with α = ``step_size``·ε (default 1/steps,
i.e. ε/steps), no random start. With ``loss="margin"`` it ascends z_t − max_{j≠t} z_j instead;
with ``loss="dlr"`` the targeted DLR −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) (Croce & Hein 2020),
which needs the true labels y and D ≥ 4.
Shapes: x (B, C, H, W) in [0, 1], y (B,) true labels, eps (B,) absolute radii.
"""

from __future__ import annotations

from robench.attacks.base import Attack, check_dlr_classes, check_settings, num_classes_of, per_image, target_labels
from robench.attacks.pgd import sign_gradient_ascent
from robench.attacks.registry import ATTACKS


@ATTACKS.register("tgsm", "native", "targeted iterative FGSM (Kurakin et al. 2016) at t = (y+1) mod D, steps of eps/steps")
class TGSM(Attack):
    name = "tgsm"
    targeted = True

    def __init__(self, steps: int = 5, step_size: float | None = None, loss: str = "ce"):
        check_settings(self.name, steps, step_size, 1, loss)
        self.steps, self.loss = steps, loss
        self.step_size = step_size if step_size is not None else 1.0 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": 1, "attack_loss": self.loss}

    def __call__(self, model, x, y, eps):
        num_classes = num_classes_of(model, x)
        if self.loss == "dlr":
            check_dlr_classes(num_classes, targeted=True)
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        targets = target_labels(y, num_classes)
        return sign_gradient_ascent(model, x, targets, radius, self.step_size * radius, self.steps, self.loss,
                                    True, x, true_labels=y)
