"""Attacks by ``(name, backend)``: one registry for the native attacks and their ART versions.

Each attack class registers itself beside its code, ``@ATTACKS.register("pgd", "native", "...")``
for robench's own implementation and ``@ATTACKS.register("pgd", "art")`` for the ART adapter of
the same attack; exactly one registration of a name carries its description. A name's backends
are listed native first, so :func:`default_backend` is ``native`` wherever robench has its own
implementation (every attack has one; some also run through ART).

:func:`build_attack` validates what it is given: an unknown name, backend or setting is a
:class:`RobenchError`, never silently dropped; a setting passed as None means the attack's default.
"""

from __future__ import annotations

import inspect
from typing import Callable

from robench.attacks.base import Attack
from robench.errors import RobenchError
from robench.registry import Entry, check_name, unknown_name_message

BACKENDS = ("native", "art")

SETTING_FLAGS = {"steps": "--steps", "step_size": "--step-size", "restarts": "--restarts", "loss": "--attack-loss",
                 "source": "--transfer-from", "norm": "--norm"}
"""How the command line spells each setting, for error messages."""


ATTACK_HINTS = {
    "fgsm": "FGSM (Goodfellow et al. 2015) is one sign step: pgd with --steps 1 --step-size 1 (its random start "
            "aside); tgsm is the targeted iterative variant, a different attack",
    "bim": "BIM / I-FGSM is pgd without random start (Python: random_start=False); tgsm is its targeted form",
    "ifgsm": "I-FGSM is pgd without random start (Python: random_start=False); tgsm is its targeted form",
    "cw": "Carlini-Wagner's loss is --attack-loss margin (pgd, tgsm, apgd)",
    "apgd-ce": "APGD with the CE loss is apgd (--attack-loss ce, the default)",
    "apgd-dlr": "APGD with the DLR loss is apgd --attack-loss dlr",
    "fab-t": "targeted FAB is fab",
}
"""Names users try that robench spells otherwise: the unknown-name error says what to use instead."""


class AttackRegistry:
    """Attack classes keyed by ``(name, backend)``; names are listed and looked up like every registry."""

    kind = "attack"

    def __init__(self) -> None:
        self._classes: dict[tuple[str, str], type[Attack]] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, backend: str = "native", description: str | None = None
                 ) -> Callable[[type[Attack]], type[Attack]]:
        """Class decorator: register ``cls`` as attack ``name`` on ``backend``."""

        def decorator(cls: type[Attack]) -> type[Attack]:
            self.add(name, backend, cls, description)
            return cls

        return decorator

    def add(self, name: str, backend: str, cls: type[Attack], description: str | None = None) -> None:
        """Register ``cls``; exactly one registration of each name carries its one-line description."""
        check_name(self.kind, name)
        if backend not in BACKENDS:
            raise ValueError(f"attack {name!r}: unknown backend {backend!r}")
        if (name, backend) in self._classes:
            raise ValueError(f"attack {name!r} on backend {backend!r} is already registered")
        if description is not None:
            if name in self._descriptions:
                raise ValueError(f"attack {name!r} is already described")
            self._descriptions[name] = description
        self._classes[(name, backend)] = cls

    def get(self, name: str, backend: str = "native") -> type[Attack]:
        """The class of attack ``name`` on ``backend``; a :class:`RobenchError` says what exists instead."""
        self.entry(name)
        if backend not in BACKENDS:
            raise RobenchError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if (name, backend) not in self._classes:
            if self.backends(name) == ("art",):
                raise RobenchError(f"{name} runs through ART only: use --backend art")
            raise RobenchError(f"{name} runs natively only (there is no ART version): use --backend native")
        return self._classes[(name, backend)]

    def backends(self, name: str) -> tuple[str, ...]:
        """The backends ``name`` runs on, native first; an unknown name is a :class:`RobenchError`."""
        self.entry(name)
        return tuple(b for b in BACKENDS if (name, b) in self._classes)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._classes})

    def entry(self, name: str) -> Entry[str]:
        """``name`` with its description; an unknown name is a :class:`RobenchError` with a suggestion."""
        if name not in self:
            raise RobenchError(self.unknown_message(name))
        return Entry(name, name, self._descriptions.get(name, ""))

    def entries(self) -> list[Entry[str]]:
        """One entry per name (with its description), for ``robench list attacks``."""
        return [self.entry(name) for name in self.names()]

    def unknown_message(self, name: str) -> str:
        if name.lower() in ATTACK_HINTS:
            return f"unknown attack {name!r}: {ATTACK_HINTS[name.lower()]}; known: {', '.join(self.names())}"
        return unknown_name_message(self.kind, name, self.names())

    def __contains__(self, name: object) -> bool:
        return any(name == n for n, _ in self._classes)


ATTACKS = AttackRegistry()


def attack_backends(name: str) -> tuple[str, ...]:
    """The backends attack ``name`` runs on, its default first; unknown names are a RobenchError."""
    return ATTACKS.backends(name)


def default_backend(name: str) -> str:
    """``native`` where robench implements the attack itself, else ``art``."""
    return attack_backends(name)[0]


def accepted_settings(cls: type[Attack]) -> list[str]:
    """The settings (constructor keywords) an attack class takes."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def build_attack(name: str, backend: str = "native", **settings) -> Attack:
    """Attack ``name`` on ``backend`` with ``settings`` (None: the attack's default).

    A setting the attack does not take (e.g. ``restarts`` for ``tgsm``, ``loss`` for ``jsma``,
    ``source`` for all but ``transfer``) is a :class:`RobenchError`.
    """
    cls = ATTACKS.get(name, backend)
    accepted = accepted_settings(cls)
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = [k for k in given if k not in accepted]
    if unknown:
        flags = ", ".join(SETTING_FLAGS.get(k, repr(k)) for k in unknown)
        takes = ", ".join(SETTING_FLAGS.get(k, k) for k in accepted) or "no settings"
        raise RobenchError(f"{name} ({backend}) does not take {flags}; it takes: {takes}")
    return cls(**given)
