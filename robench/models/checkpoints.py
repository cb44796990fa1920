"""Checkpoints: ``model.safetensors`` (weights) + ``run.json`` (everything else).

A run directory holds the weights as safetensors and the run's metadata as JSON, so a
checkpoint handed to us is never unpickled. :func:`load_checkpoint` rebuilds the model
from the metadata alone::

    from robench import load_checkpoint
    model, meta = load_checkpoint("runs/x")   # eval mode; images in [0, 1] -> z (B, D)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from robench.errors import RobenchError
from robench.files import file_sha256, load_tensors
from robench.models.builders import build_model
from robench.models.classifier import Classifier
from robench.models.memory_format import place
from robench.models.run_layout import METADATA, WEIGHTS
from robench.models.run_schema import validate_run_metadata
from robench.models.user_models import (IMPORTED, build_user_model, fit_weights, imported_identity)


def read_metadata(run_dir: str | Path) -> dict:
    """The run.json of ``run_dir`` as a dict; a missing or broken file is a RobenchError."""
    path = Path(run_dir) / METADATA
    if not Path(run_dir).is_dir():
        raise RobenchError(f"checkpoint {run_dir} not found: expected a run directory holding {METADATA} and {WEIGHTS}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RobenchError(f"{run_dir} is not a robench run: {METADATA} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RobenchError(f"{path} is not valid JSON: {exc}") from None
    return validate_run_metadata(meta, path)


def build_from_metadata(meta: dict) -> Classifier:
    channels, height, width = meta["input_shape"]
    return build_model(
        meta["model"],
        in_channels=channels,
        image_size=(height, width),
        num_classes=meta["num_classes"],
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        options=meta.get("model_options") or {},
    )


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; missing or unexpected keys are an error."""
    state = load_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise RobenchError(f"{path} does not fit the model in its run.json: {first[-1].strip() if first else exc}") from None


def model_identity(meta: dict, weights_sha256: str | None = None) -> str | None:
    """A model's identity, the ``model_sha256`` its results record: the SHA-256 of its weights (run.json's
    ``weights_sha256``, or ``weights_sha256`` given), for an imported model together with its factory."""
    weights_sha256 = weights_sha256 or meta.get("weights_sha256")
    if weights_sha256 is None or meta.get("origin") != IMPORTED:
        return weights_sha256
    return imported_identity(weights_sha256, meta["factory"], meta.get("factory_args"))


def load_checkpoint(run_dir: str | Path, device: str | torch.device = "cpu", *, verify: bool = True,
                    trust_code: bool = False) -> tuple[torch.nn.Module, dict]:
    """Model (eval mode, on ``device``) and run.json metadata of a run directory.

    The metadata gains ``model_sha256``, the model's identity (:func:`model_identity` of the weights
    file as it is), recorded by every result computed on it. A finished run's run.json records the hash
    of the weights it wrote (``weights_sha256``); a file that no longer matches it (replaced or
    damaged) is a :class:`RobenchError` unless ``verify`` is False. An imported run
    (:mod:`robench.models.user_models`) is rebuilt by running its factory, which robench does only
    with ``trust_code``.
    """
    run_dir = Path(run_dir)
    meta = read_metadata(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise RobenchError(f"{run_dir} has no {WEIGHTS}: the run never finished an epoch")
    actual = file_sha256(weights)
    recorded = meta.get("weights_sha256")
    if verify and recorded and recorded != actual:
        raise RobenchError(f"{weights} is not the file its run.json records (weights_sha256 {recorded[:12]}..., the "
                           f"file {actual[:12]}...): the weights were replaced or damaged; retrain, or pass "
                           "--trust-weights to use the file as it is (results then name its own hash)")
    if meta.get("origin") == IMPORTED:
        if not trust_code:
            raise RobenchError(f"{run_dir} was imported from the model code {meta.get('factory')}; robench runs that "
                               "code only when you say so: pass --trust-code (or trust_code=True)")
        model = build_user_model(meta["factory"], meta.get("factory_args"))
        fit_weights(model, load_tensors(weights), meta["factory"])
        model.to(device)  # the user's code keeps its layout
    else:
        model = place(build_from_metadata(meta), device)
        load_weights(model, weights)
    return model.eval(), {**meta, "model_sha256": model_identity(meta, actual)}


def check_compatible(parent: dict, child: dict, parent_path: Path) -> None:
    """An ``--init`` checkpoint must share dataset, model, options and classes with the new run."""
    fields = ("dataset", "dataset_options", "model", "model_options", "num_classes", "input_shape")
    diffs = [f"{f} {parent.get(f)!r} vs {child.get(f)!r}" for f in fields if parent.get(f) != child.get(f)]
    if diffs:
        raise RobenchError(f"--init {parent_path} does not match this run: " + "; ".join(diffs))
