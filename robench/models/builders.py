"""Model builders, registered by name: ``small-cnn``, ``resnet18``, ``shake-shake-26-2x{96,112}d``.

Each builds a :class:`~robench.models.classifier.Classifier` (Ali et al. 2020, Sec. III). Models are
registered by name in :data:`MODELS` and built with :func:`build_model`::

    model = build_model("resnet18", in_channels=1, image_size=(28, 28), num_classes=10,
                        mean=(0.286,), std=(0.353,), options={"width": 0.5})

The feature extractors live in :mod:`robench.models.architectures`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from robench.errors import RobenchError
from robench.models.architectures.resnet import ResNet18Features
from robench.models.architectures.shake_shake import ShakeShakeFeatures
from robench.models.architectures.small_cnn import SmallCNNFeatures
from robench.models.classifier import Classifier, LatentMapper, Normalize
from robench.registry import Registry

MODELS: Registry[Callable[..., Classifier]] = Registry("model")
"""Model builders by name. Each is called as ``builder(*, in_channels, image_size,
num_classes, mean, std, **options)`` and returns a :class:`Classifier`; use
:func:`build_model`, which validates the inputs and the option names."""

_COMMON = ("in_channels", "image_size", "num_classes", "mean", "std")
MAX_WIDTH = 16          # width multipliers and hidden sizes are bounded: a run.json may be hostile
MAX_HIDDEN = 16384
MAX_HIDDEN_LAYERS = 8


def model_options(name: str) -> dict[str, Any]:
    """The architecture options a model accepts, with their defaults."""
    parameters = inspect.signature(MODELS.get(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _COMMON}


def build_model(
    name: str,
    *,
    in_channels: int,
    image_size: tuple[int, int],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    options: dict | None = None,
) -> Classifier:
    """Build the registered model ``name`` for ``(C, H, W)`` images and ``D`` classes.

    ``mean`` and ``std`` (one entry per channel) go into the model's :class:`Normalize`.
    ``options`` are architecture options (see :func:`model_options`); an unknown option,
    a bad value, an unknown name or inconsistent shapes raise :class:`RobenchError`.
    """
    builder = MODELS.get(name)
    options = dict(options or {})
    known = model_options(name)
    for option in options:
        if option not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise RobenchError(f"unknown option {option!r} for model {name!r}; known: {listed}")
    _check_shapes(name, in_channels, image_size, num_classes, mean, std)
    return builder(
        in_channels=in_channels,
        image_size=(int(image_size[0]), int(image_size[1])),
        num_classes=num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        **options,
    )


def _check_shapes(name, in_channels, image_size, num_classes, mean, std) -> None:
    if not _is_int(in_channels) or in_channels < 1:
        raise RobenchError(f"model {name!r}: in_channels must be a positive integer, got {in_channels!r}")
    if len(image_size) != 2 or not all(_is_int(s) and s >= 1 for s in image_size):
        raise RobenchError(f"model {name!r}: image_size must be (height, width), got {image_size!r}")
    if not _is_int(num_classes) or num_classes < 2:
        raise RobenchError(f"model {name!r}: num_classes must be an integer >= 2, got {num_classes!r}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise RobenchError(
            f"model {name!r}: mean and std need one entry per channel ({in_channels}), "
            f"got {len(mean)} and {len(std)}"
        )
    if not all(math.isfinite(s) and s > 0 for s in std):
        raise RobenchError(f"model {name!r}: std must be positive, got {tuple(std)!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _width(model: str, value: object) -> float:
    """Validate a width multiplier: a finite number > 0."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
            or value > MAX_WIDTH):
        raise RobenchError(f"model {model!r}: option 'width' must be a number > 0 and at most {MAX_WIDTH}, got {value!r}")
    return float(value)


def _hidden(model: str, value: object) -> tuple[int, ...]:
    """Validate hidden FC widths: a positive int, or a list of them (empty: no hidden layer)."""
    sizes = (value,) if _is_int(value) else value
    if (not isinstance(sizes, (list, tuple)) or len(sizes) > MAX_HIDDEN_LAYERS
            or not all(_is_int(s) and 1 <= s <= MAX_HIDDEN for s in sizes)):
        raise RobenchError(
            f"model {model!r}: option 'hidden' must be a positive integer (at most {MAX_HIDDEN}) or a list of at "
            f"most {MAX_HIDDEN_LAYERS} of them, got {value!r}"
        )
    return tuple(sizes)


@MODELS.register("small-cnn", "small CNN (2 conv-BN-ReLU-maxpool blocks, FC 128) for quick CPU runs")
def build_small_cnn(*, in_channels, image_size, num_classes, mean, std, hidden=128) -> Classifier:
    """Two conv blocks (32, 64 channels) + mapper ``Linear(-> hidden) -> Linear(-> D)``; needs H, W >= 4."""
    if min(image_size) < 4:
        raise RobenchError(f"model 'small-cnn' needs images of at least 4x4, got {image_size[0]}x{image_size[1]}")
    features = SmallCNNFeatures(in_channels, image_size)
    mapper = LatentMapper(features.out_features, num_classes, _hidden("small-cnn", hidden))
    return Classifier(Normalize(mean, std), features, mapper)


@MODELS.register("resnet18", "CIFAR-style ResNet-18 (He et al. 2016) + FC 256 mapper; option width")
def build_resnet18(*, in_channels, image_size, num_classes, mean, std, width=1.0, hidden=256) -> Classifier:
    """ResNet-18 features (512 * width) + mapper ``Linear(-> hidden) -> Linear(-> D)``."""
    features = ResNet18Features(in_channels, _width("resnet18", width))
    mapper = LatentMapper(features.out_features, num_classes, _hidden("resnet18", hidden))
    return Classifier(Normalize(mean, std), features, mapper)


def _register_shake_shake(k: int, widen: int) -> None:
    name = f"shake-shake-26-2x{k}d"

    def build(*, in_channels, image_size, num_classes, mean, std, width=1.0, hidden=()) -> Classifier:
        base = max(1, round(k * _width(name, width)))
        features = ShakeShakeFeatures(in_channels, base)
        mapper = LatentMapper(features.out_features, num_classes, _hidden(name, hidden))
        return Classifier(Normalize(mean, std), features, mapper)

    build.__name__ = f"build_shake_shake_26_2x{k}d"
    build.__doc__ = (
        f"Shake-Shake-Image 26 2x{k}d (Gastaldi, 2017; widen factor {widen}) features (4 * {k} * width) "
        "+ mapper ``Linear(-> D)`` (optional ``hidden`` FC layers before it)."
    )
    description = f"Shake-Shake-Image 26 2x{k}d (Gastaldi 2017), widen factor {widen}; option width"
    MODELS.add(name, build, description)


_register_shake_shake(96, 6)
_register_shake_shake(112, 7)
