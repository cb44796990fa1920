"""A user's own model, as robench evaluates it: a factory function and its trained weights.

    python examples/tiny_model.py weights.pt      # train it on scikit-learn's digits (seconds) and save
    robench attack --model-factory examples/tiny_model.py:build --weights weights.pt --dataset digits ...

``build`` returns a plain ``nn.Module`` mapping 8x8 digit images in [0, 1] (B, 1, 8, 8) to 10 logits;
nothing in it knows about robench.
"""

import sys

import torch
from sklearn.datasets import load_digits
from torch import nn


def build(hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train(path: str, hidden: int = 64, epochs: int = 60) -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    model = build(hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.save(model.state_dict(), path)  # a plain state dict: robench reads it with weights_only=True


if __name__ == "__main__":
    train(sys.argv[1] if len(sys.argv) > 1 else "weights.pt")
