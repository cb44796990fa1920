"""Cross-entropy on z used as logits: the paper's "no defense" baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.losses.base import LatentLoss, register_loss


@register_loss("ce", "cross-entropy on z as logits (no defense)")
class CrossEntropyLoss(LatentLoss):
    """Cross-entropy on z (batch, D) as logits, averaged over the batch."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, y)
