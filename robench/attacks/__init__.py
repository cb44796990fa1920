"""Attacks by name: native batched implementations (one per file) and ART adapters (``art.py``)."""

from __future__ import annotations

import inspect

from robench.attacks.base import ATTACK_LOSSES, ATTACKS, Attack, attack_objective, project, target_labels
from robench.attacks.jsma import JSMA
from robench.attacks.pgd import PGD
from robench.attacks.tgsm import TGSM
from robench.errors import RobenchError

BACKENDS = ("native", "art")

__all__ = ["ATTACKS", "ATTACK_LOSSES", "BACKENDS", "Attack", "PGD", "TGSM", "JSMA", "attack_objective", "project",
           "target_labels", "build_attack"]


def build_attack(name: str, backend: str = "native", **settings) -> Attack:
    """Attack ``name`` on ``backend`` with the given settings (None = the attack's default).

    Settings an attack does not take (e.g. ``restarts`` for ``tgsm``, ``loss`` for ``jsma``)
    are ignored; the row it writes records what it actually used (``Attack.settings()``).
    """
    factory = ATTACKS.get(name)
    if backend == "art":
        from robench.attacks.art import ART_ATTACKS

        factory = ART_ATTACKS[name]
    elif backend != "native":
        raise RobenchError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    accepted = inspect.signature(factory.__init__).parameters
    return factory(**{k: v for k, v in settings.items() if k in accepted and v is not None})
