"""Attacks by name and backend: native batched implementations (one per file) and ART adapters.

Every attack registers itself in :data:`ATTACKS` under ``(name, backend)`` beside its code
(:mod:`~robench.attacks.registry`). Native: ``pgd``, ``tgsm``, ``jsma`` (the paper's), ``apgd``,
``apgd-t``, ``fab``, ``square`` (AutoAttack's parts), ``autoattack`` (their ensemble) and ``transfer``; ``pgd``, ``tgsm``, ``jsma``,
``apgd`` and ``square`` also run through ART as cross-checks (``art.py``, ``art_adaptive.py``).
:func:`attack_backends` says which, :func:`default_backend` picks one (native where there is one),
:func:`build_attack` builds one and refuses settings it does not take.
"""

from robench.attacks import (apgd, apgd_t, art, art_adaptive, autoattack, fab, jsma, pgd,  # noqa: F401 (register)
                             square, tgsm, transfer)
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
