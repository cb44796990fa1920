"""Attacks by name: native batched implementations (one per file) and ART adapters (``art.py``).

Most attacks run on both backends; ``apgd`` and ``square`` run through ART only (``art_only``),
``transfer`` natively only. :func:`attack_backends` says which, :func:`default_backend` picks one.
"""

from __future__ import annotations

import inspect

from robench.attacks.art import ART_ATTACKS
from robench.attacks.art_adaptive import ArtAPGD, ArtSquare
from robench.attacks.base import ATTACK_LOSSES, ATTACKS, Attack, attack_objective, project, target_labels
from robench.attacks.jsma import JSMA
from robench.attacks.pgd import PGD
from robench.attacks.tgsm import TGSM
from robench.attacks.transfer import Transfer
from robench.errors import RobenchError

BACKENDS = ("native", "art")

__all__ = ["ATTACKS", "ATTACK_LOSSES", "BACKENDS", "Attack", "PGD", "TGSM", "JSMA", "Transfer", "ArtAPGD",
           "ArtSquare", "attack_objective", "project", "target_labels", "build_attack", "attack_backends",
           "default_backend"]


def attack_backends(name: str) -> tuple[str, ...]:
    """The backends attack ``name`` runs on, its default first; unknown names are a RobenchError."""
    if getattr(ATTACKS.get(name), "art_only", False):
        return ("art",)
    return BACKENDS if name in ART_ATTACKS else ("native",)


def default_backend(name: str) -> str:
    """``"art"`` for attacks that run through ART only (``apgd``, ``square``), else ``"native"``."""
    return attack_backends(name)[0]


def build_attack(name: str, backend: str = "native", **settings) -> Attack:
    """Attack ``name`` on ``backend`` with the given settings (None = the attack's default).

    Settings an attack does not take (e.g. ``restarts`` for ``tgsm``, ``loss`` for ``jsma``,
    ``source`` for all but ``transfer``) are ignored; the row it writes records what it actually
    used (``Attack.settings()``).
    """
    factory = ATTACKS.get(name)
    if backend not in BACKENDS:
        raise RobenchError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend not in attack_backends(name):
        if factory.art_only:
            raise RobenchError(f"{name} runs through ART only: use --backend art")
        raise RobenchError(f"{name} runs natively only (there is no ART version): use --backend native")
    if backend == "art" and not factory.art_only:
        factory = ART_ATTACKS[name]
    accepted = inspect.signature(factory.__init__).parameters
    return factory(**{k: v for k, v in settings.items() if k in accepted and v is not None})
