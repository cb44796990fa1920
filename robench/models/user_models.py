"""Models robench did not train: the user's ``nn.Module`` from a factory, with its weights, as a run directory.

A factory is named ``MODULE:FUNCTION`` (an importable module) or ``path/to/file.py:FUNCTION``; called
with the ``--factory-arg`` keyword arguments it returns an ``nn.Module`` mapping images in [0, 1] of the
dataset's shape (B, C, H, W) to D logits. Weights are a ``.safetensors`` file or a ``.pt``/``.pth``
state dict, read with ``torch.load(..., weights_only=True)``: a pickle of Python objects is refused,
never unpickled. :func:`import_model` checks that the weights fit the module and that its outputs
have the dataset's D classes, and writes a regular run directory (``model.safetensors`` + run.json
with ``origin = "imported"``, the factory, its arguments and the hashes), which attacks, audits and
reports then treat like a trained checkpoint.

The model's identity (the ``model_sha256`` of every result computed on it) is the SHA-256 of its
weights together with the factory reference and arguments (:func:`imported_identity`): the same
weights under another architecture are another model. Loading an imported run runs the factory's
code, so robench does that only when told to (``trust_code``): the command that names the factory
does, a run directory found later needs ``--trust-code``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import pickle
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from robench.data import load_dataset
from robench.errors import RobenchError
from robench.files import (atomic_write_bytes, atomic_write_json, check_directory_target, file_sha256)
from robench.models.run_layout import METADATA, WEIGHTS
from robench.provenance import environment, utc_now

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
IMPORTED = "imported"


def load_factory(ref: str):
    """The callable ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION`` names; a one-line error if it does not import."""
    target, sep, name = ref.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise RobenchError(f"--model-factory {ref!r}: expected MODULE:FUNCTION or path/to/file.py:FUNCTION")
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise RobenchError(f"--model-factory {ref!r}: {path} is not a file")
            spec = importlib.util.spec_from_file_location(f"robench_user_model_{abs(hash(path.resolve()))}", path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            module = importlib.import_module(target)
    except RobenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything while importing
        raise RobenchError(f"--model-factory {ref!r}: importing {target} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise RobenchError(f"--model-factory {ref!r}: {target} has no function {name!r}")
    return factory


def build_user_model(ref: str, args: dict | None = None) -> nn.Module:
    """``factory(**args)``, checked to be an ``nn.Module``."""
    factory = load_factory(ref)
    try:
        model = factory(**(args or {}))
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise RobenchError(f"--model-factory {ref}: calling it with {args or {}} failed: {type(exc).__name__}: "
                           f"{exc}") from None
    if not isinstance(model, nn.Module):
        raise RobenchError(f"--model-factory {ref} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pt``/``.pth`` state dict (``weights_only``); never a pickle."""
    path = Path(path)
    if not path.is_file():
        raise RobenchError(f"--weights {path} is not a file")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise RobenchError(f"--weights {path}: expected {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RobenchError(f"cannot read --weights {path}: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as exc:
        raise RobenchError(f"--weights {path} is not a plain state dict (robench never unpickles Python objects: "
                           f"{type(exc).__name__}); save model.state_dict() instead, e.g. torch.save(model.state_dict(), "
                           f"'{path.name}') or safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
                           ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training-framework checkpoint holding the state dict
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise RobenchError(f"--weights {path} does not hold a state dict (names -> tensors)")
    return state


def fit_weights(model: nn.Module, state: dict[str, torch.Tensor], ref: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch names the first missing and unexpected keys."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        parts = [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []
        parts += [f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else []
        raise RobenchError(f"the weights do not fit {ref}: {'; '.join(parts)}")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise RobenchError(f"the weights do not fit {ref}: {k} has shape {tuple(state[k].shape)}, the module's "
                           f"{tuple(own[k].shape)}")
    model.load_state_dict(state, strict=True)


def check_outputs(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, ref: str) -> None:
    """The model maps one image of ``input_shape`` to (1, ``num_classes``) finite logits."""
    model.eval()
    try:
        with torch.no_grad():
            z = model(torch.full((1, *input_shape), 0.5))
    except Exception as exc:  # noqa: BLE001 - the user's forward
        raise RobenchError(f"{ref} fails on one {'x'.join(map(str, input_shape))} image: {type(exc).__name__}: "
                           f"{exc}") from None
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != (1, num_classes):
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise RobenchError(f"{ref} returns {shape} for one image, but the dataset has {num_classes} classes: "
                           f"expected (1, {num_classes}) logits")


def imported_identity(weights_sha256: str, ref: str, args: dict | None) -> str:
    """An imported model's identity: SHA-256 over its weights' hash, the factory reference and its arguments."""
    text = json.dumps({"weights_sha256": weights_sha256, "factory": ref, "factory_args": args or {}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()



def import_model(ref: str, weights: str | Path, dataset: str, out: str | Path, *, factory_args: dict | None = None,
                 dataset_options: dict | None = None, data_dir: str | None = None, download: bool = False,
                 force: bool = False) -> dict:
    """Write the run directory ``out`` for the user's model (``ref`` + ``weights``) on ``dataset``; returns its
    run.json. An ``out`` that already holds this very model is kept as it is; another model there needs ``force``.

    The run.json records ``origin = "imported"``, the factory and its arguments, where the weights came from
    (and their file's SHA-256), the SHA-256 of the ``model.safetensors`` written, the model's identity
    (:func:`imported_identity`) and its clean accuracy on the dataset's test set.
    """
    out, weights = Path(out), Path(weights)
    check_directory_target(out, "--out")
    options = dict(dataset_options or {})
    data = load_dataset(dataset, data_dir=data_dir, download=download, options=options)
    info = data.info
    model = build_user_model(ref, factory_args)
    state = read_state_dict(weights)
    fit_weights(model, state, ref)
    input_shape = (info.channels, *info.image_size)
    check_outputs(model, input_shape, info.num_classes, ref)
    blob = save({k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()})
    weights_sha256 = hashlib.sha256(blob).hexdigest()
    identity = imported_identity(weights_sha256, ref, factory_args)
    if (out / METADATA).is_file():
        existing = json.loads((out / METADATA).read_text(encoding="utf-8"))
        if existing.get("model_sha256") == identity and (out / WEIGHTS).is_file():
            return existing
        if not force:
            raise RobenchError(f"{out} holds another model ({existing.get('factory') or existing.get('model')}); "
                               "choose a new --out or pass --force to replace it")
    elif out.exists() and any(out.iterdir()) and not force:
        raise RobenchError(f"--out {out} is a non-empty directory without a robench run; choose a new --out")
    with torch.no_grad():
        correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(data.x_test.split(500),
                                                                               data.y_test.split(500)))
    accuracy = correct / len(data.y_test)
    meta = {"format": "robench-run-1", "status": "finished", "origin": IMPORTED, "dataset": dataset,
            "dataset_options": options, "num_classes": info.num_classes, "input_shape": list(input_shape),
            "mean": list(info.mean), "std": list(info.std), "class_names": list(info.class_names),
            "n_test": len(data.y_test), "model": IMPORTED, "model_options": {}, "loss": "unknown", "loss_hyper": {},
            "training": IMPORTED, "parent": None, "seed": None, "epochs": 0, "epochs_done": 0,
            "test_accuracy": accuracy, "best_test_accuracy": accuracy, "history": [], "factory": ref,
            "factory_args": dict(factory_args or {}), "weights_source": str(weights),
            "weights_source_sha256": file_sha256(weights), "weights_sha256": weights_sha256, "model_sha256": identity,
            "environment": environment(torch.device("cpu")), "imported_at": utc_now(), "wall_time_s": 0.0}
    atomic_write_bytes(out / WEIGHTS, blob)
    atomic_write_json(out / METADATA, meta)
    return meta
