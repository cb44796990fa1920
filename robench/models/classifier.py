"""The classifier of Ali et al. (2020), "Beyond cross-entropy", Sec. III and Fig. 1.

Every model is ``Normalize(mean, std) -> feature extractor -> latent space mapper``. Images
come in as float tensors in [0, 1], shape ``(B, C, H, W)``; the normalization lives inside
the model so that attacks work in pixel space. The mapper is one or more fully connected
layers, dropout with keep probability 0.8 before each of them, ReLU between them and no
activation after the last, which outputs ``z`` of shape ``(B, D)`` for ``D`` classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KEEP_PROB = 0.8
"""Dropout keep probability before every fully connected layer (Ali et al., 2020, Sec. IV-A)."""


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` for ``(B, C, H, W)`` images in [0, 1].

    ``mean`` and ``std`` have one entry per channel and are stored as buffers of shape
    ``(1, C, 1, 1)``, so they move with the model and are saved in its state dict.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} entries but std has {len(std)}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"


class LatentMapper(nn.Sequential):
    """The latent space mapper of Ali et al. (2020, Sec. III): features ``(B, F)`` -> ``z`` ``(B, D)``.

    ``Dropout(1 - keep_prob) -> Linear`` for each width in ``hidden`` with a ReLU after
    each, then ``Dropout(1 - keep_prob) -> Linear(-> num_classes)`` with no activation.
    With ``hidden=()`` it is a single (dropout + linear) layer. The last module is always
    the final :class:`torch.nn.Linear`.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (), keep_prob: float = KEEP_PROB):
        if not 0 < keep_prob <= 1:
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Dropout(p=1 - keep_prob), nn.Linear(width, size), nn.ReLU(inplace=True)]
            width = size
        layers += [nn.Dropout(p=1 - keep_prob), nn.Linear(width, num_classes)]
        super().__init__(*layers)
        self.in_features = in_features
        self.num_classes = num_classes


class Classifier(nn.Module):
    """``normalize -> features -> mapper``: images ``(B, C, H, W)`` in [0, 1] to ``z`` ``(B, D)``.

    ``z`` is the latent vector of Ali et al. (2020): logits for cross-entropy, the point
    to compare with the simplex targets for GCCS. No activation is applied to it.
    """

    def __init__(self, normalize: nn.Module, features: nn.Module, mapper: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.mapper = mapper
        linears = [m for m in mapper.modules() if isinstance(m, nn.Linear)]
        self.num_classes: int | None = linears[-1].out_features if linears else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapper(self.features(self.normalize(x)))
