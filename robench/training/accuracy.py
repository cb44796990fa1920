"""Evaluating models: clean predictions and accuracy, batched, without gradients."""

from __future__ import annotations

import torch

from robench.losses import prediction


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, *, device: torch.device | str = "cpu",
            batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels (eq. 3, argmax of z) for images ``x`` (N, C, H, W) in [0, 1], on the CPU.

    The model is put in eval mode for the call and returned to its previous mode.
    """
    was_training = model.training
    model.eval()
    try:
        preds = [prediction(model(chunk.to(device))).cpu() for chunk in x.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device | str = "cpu",
             batch_size: int = 1000) -> float:
    """Fraction of ``x`` classified as ``y`` (n_correct / n, full precision)."""
    if len(y) == 0:
        return float("nan")
    return (predict(model, x, device=device, batch_size=batch_size) == y.cpu()).sum().item() / len(y)
