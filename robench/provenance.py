"""Provenance of a result: package versions, git commit, platform, device and time.

:func:`environment` is recorded in every run.json, audit.json and manifest.json, so a number
can always be traced to the code and machine that produced it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("robench", "torch", "torchvision", "numpy", "safetensors", "adversarial-robustness-toolbox")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(src: Path | None = None) -> str | None:
    """The commit of the robench source tree (``+dirty`` if the code has local changes), or None.

    Only ``robench/`` and ``pyproject.toml`` count: a run that writes into a tracked ``results/``
    directory does not make its own provenance dirty.
    """
    src = src or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "robench",
                                "pyproject.toml"], cwd=src, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch"] = torch.__version__  # keeps the build tag, e.g. +cu130 or +cpu
    versions["cuda"] = torch.version.cuda
    return versions


def environment(device: torch.device) -> dict:
    """Provenance of a result: versions, git commit, platform, device and thread count."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
    }
