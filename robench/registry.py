"""A small generic registry of named things (datasets, models, losses, attacks).

Modelled on timm's model registry: register under one stable lowercase-hyphenated
name with a one-line description, list the names, look one up by name with a
clear "unknown ... (did you mean ...?)" error.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from robench.errors import RobenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


def check_name(kind: str, name: str) -> None:
    """Names are lowercase-hyphenated (``cross-lipschitz``, ``small-cnn``); anything else is a bug."""
    if name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"{kind} name {name!r} must be lowercase-hyphenated")


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown attack 'pdg' (did you mean 'pgd'?); known: ...``."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}"


class Registry(Generic[T]):
    """Named entries of one kind, e.g. ``Registry("loss")``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator: ``@LOSSES.register("gccs", "Gaussian class-conditional simplex loss")``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description)
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        check_name(self.kind, name)
        self._entries[name] = Entry(name, obj, description)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise RobenchError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self.names())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries
