"""Attacks by name and backend: native batched implementations (one per file) and ART adapters.

Every attack registers itself in :data:`ATTACKS` under ``(name, backend)`` beside its code
(:mod:`~robench.attacks.registry`). Most attacks run on both backends; ``apgd`` and ``square``
run through ART only, ``transfer`` natively only. :func:`attack_backends` says which,
:func:`default_backend` picks one, :func:`build_attack` builds one and refuses settings it
does not take.
"""

from robench.attacks import art, art_adaptive, jsma, pgd, tgsm, transfer  # noqa: F401  (register the attacks)
from robench.attacks.art_adaptive import ArtAPGD, ArtSquare
from robench.attacks.base import ATTACK_LOSSES, Attack, attack_objective, project, target_labels
from robench.attacks.jsma import JSMA
from robench.attacks.pgd import PGD
from robench.attacks.registry import ATTACKS, BACKENDS, attack_backends, build_attack, default_backend
from robench.attacks.tgsm import TGSM
from robench.attacks.transfer import Transfer

__all__ = ["ATTACKS", "ATTACK_LOSSES", "BACKENDS", "Attack", "PGD", "TGSM", "JSMA", "Transfer", "ArtAPGD",
           "ArtSquare", "attack_objective", "project", "target_labels", "build_attack", "attack_backends",
           "default_backend"]
