"""Resolve ``--device auto|cpu|cuda`` to a :class:`torch.device`."""

from __future__ import annotations

import torch

from robench.errors import RobenchError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise RobenchError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RobenchError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)
