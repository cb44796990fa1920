"""What a run.json must hold before robench builds a model from it: types, required keys, bounded sizes.

A run directory may come from anywhere (a colleague, a download), so its run.json is untrusted
input: every field robench uses to build or describe a model is checked for its type and range
before use, and no size in it can make robench allocate more than a plausible image classifier
needs (``input_shape = [1, 100000, 100000]`` is refused, not allocated).
"""

from __future__ import annotations

from pathlib import Path

from robench.checks import is_number
from robench.errors import RobenchError

MAX_CHANNELS = 64
MAX_SIDE = 2048
MAX_CLASSES = 100_000
REQUIRED = {"dataset": str, "model": str, "loss": str, "num_classes": int, "input_shape": list, "mean": list,
            "std": list}
OPTIONAL = {"dataset_options": dict, "model_options": dict, "loss_hyper": dict, "training": str, "status": str,
            "seed": int, "epochs": int, "epochs_done": int, "weights_sha256": str, "history": list, "config": dict,
            "environment": dict, "parent": dict, "class_names": list, "optimizer": dict, "origin": str,
            "factory": str, "factory_args": dict}


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_run_metadata(meta: object, path: Path) -> dict:
    """``meta`` if it is a usable run.json, else a :class:`RobenchError` naming the file and the field."""
    def bad(field: str, why: str) -> RobenchError:
        return RobenchError(f"{path}: {field} {why}; is it a robench run.json?")

    if not isinstance(meta, dict):
        raise RobenchError(f"{path} is not a robench run.json (not a JSON object)")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise RobenchError(f"{path} lacks {', '.join(missing)}: not a robench run")
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        value = meta.get(key)
        if key in OPTIONAL and value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(key, f"must be a {kind.__name__}, got {type(value).__name__}")
    shape = meta["input_shape"]
    if len(shape) != 3 or not all(is_int(s) and s >= 1 for s in shape):
        raise bad("input_shape", f"must be [channels, height, width] of positive integers, got {shape!r}")
    if shape[0] > MAX_CHANNELS or max(shape[1:]) > MAX_SIDE:
        raise bad("input_shape", f"{shape!r} is beyond robench's bounds ({MAX_CHANNELS} channels, {MAX_SIDE} pixels)")
    if not 2 <= meta["num_classes"] <= MAX_CLASSES:
        raise bad("num_classes", f"must be in 2..{MAX_CLASSES}, got {meta['num_classes']}")
    for key in ("mean", "std"):
        values = meta[key]
        if len(values) != shape[0] or not all(is_number(v) for v in values):
            raise bad(key, f"must hold one finite number per channel ({shape[0]}), got {values!r}")
    if not all(v > 0 for v in meta["std"]):
        raise bad("std", f"must be positive, got {meta['std']!r}")
    if meta.get("origin") == "imported" and not meta.get("factory"):
        raise bad("factory", "is missing: an imported run names the factory that builds its model")
    sha = meta.get("weights_sha256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise bad("weights_sha256", "is not a SHA-256 in hex")
    return meta
