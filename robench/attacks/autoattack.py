"""``autoattack``: the standard AutoAttack ensemble (Croce & Hein 2020, ICML, Sec. 5), natively.

Four parameter-free attacks in AutoAttack's order, each run only on the images every earlier one
left correctly classified, each image keeping the first adversarial example found:

1. ``apgd`` with the CE loss (100 iterations, 1 restart);
2. ``apgd-t``: targeted APGD with the DLR loss over the 9 most likely other classes (100 iterations each);
3. ``fab``: targeted FAB over the 9 most likely other classes (100 iterations each);
4. ``square``: the score-based Square Attack (5,000 queries), a check against gradient masking.

``norm`` is ``Linf`` or ``L2`` for all four (RobustBench's threat models). ``steps`` sets the
iterations of the three white-box parts and ``queries`` Square's budget. After a call,
:attr:`AutoAttack.broken_by` says, per image, which part broke it (its index, −1 for none), so a
report can say what each part contributed. Images misclassified to begin with, and those with
ε = 0, are never attacked. Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii.
"""

from __future__ import annotations

import torch

from robench.attacks.apgd import APGD
from robench.attacks.apgd_t import APGDT
from robench.attacks.base import Attack, check_settings
from robench.attacks.fab import FAB
from robench.attacks.registry import ATTACKS
from robench.attacks.square import Square
from robench.norms import check_norm

PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")
"""The parts in the order they run, as the rows' ``source`` names them."""


@ATTACKS.register("autoattack", "native", "AutoAttack, standard version (Croce & Hein 2020): APGD-CE, APGD-T, "
                                          "FAB-T, Square-5000, each on the images still robust")
class AutoAttack(Attack):
    name = "autoattack"
    targeted = False

    def __init__(self, steps: int = 100, queries: int = 5000, norm: str = "Linf"):
        check_settings(self.name, steps, None, 1, "ce")
        check_settings(self.name, queries, None, 1, "ce")
        self.steps, self.queries, self.norm = steps, queries, check_norm(self.name, norm)
        self.parts: list[Attack] = [APGD(steps=steps, loss="ce", norm=norm), APGDT(steps=steps, norm=norm),
                                    FAB(steps=steps, norm=norm), Square(steps=queries, norm=norm)]
        self.broken_by = torch.zeros(0, dtype=torch.long)

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": 1, "attack_loss": "ensemble",
                "norm": self.norm, "source": " -> ".join(PARTS[:3]) + f" -> square-{self.queries}"}

    def __call__(self, model, x, y, eps):
        x_adv = x.clone()
        with torch.no_grad():
            standing = (model(x).argmax(1) == y) & (eps.to(x.device) > 0)
        broken_by = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        for index, part in enumerate(self.parts):
            rows = standing.nonzero().flatten()
            if len(rows) == 0:
                break
            adv = part(model, x[rows], y[rows], eps.to(x.device)[rows])
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y[rows]
            x_adv[rows[fooled]] = adv[fooled]
            standing[rows[fooled]] = False
            broken_by[rows[fooled]] = index
        self.broken_by = broken_by.cpu()
        return x_adv
