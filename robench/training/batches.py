"""Mini-batch index streams for training: plain shuffling or class-balanced batches.

GCCS estimates a mean and a covariance per class from each batch (Ali et al., eq. 1),
so a class needs at least two rows in a batch to contribute, and more to give a useful
covariance. With 10 classes and batch 128 plain shuffling gives about 13 rows per class.
With many classes (CIFAR-100: about 1.3 rows per class at batch 128) most classes get
0–2 rows; then use class-balanced batches, ``samples_per_class = K``: every batch holds
K rows of each of ``batch_size // K`` randomly chosen classes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from robench.errors import RobenchError


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """A random permutation of ``range(n)`` cut into batches (the last may be smaller)."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def balanced_batches(
    labels: torch.Tensor, batch_size: int, samples_per_class: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``len(labels) // batch_size`` batches of ``samples_per_class`` rows from each of
    ``batch_size // samples_per_class`` distinct random classes.

    Each class's rows are drawn without replacement from a per-class shuffled queue that
    is refilled (reshuffled) when it runs out, so every image is seen about once per epoch.
    """
    k = samples_per_class
    classes = torch.unique(labels)
    per_batch = batch_size // k
    if k < 2:
        raise RobenchError(f"samples per class must be at least 2 (GCCS needs two rows per class), got {k}")
    if per_batch < 1 or per_batch > len(classes):
        raise RobenchError(
            f"class-balanced batches of {batch_size} with {k} samples per class need between 1 and "
            f"{len(classes)} classes per batch, got {per_batch}; adjust --batch-size or --samples-per-class"
        )
    members = {int(c): torch.nonzero(labels == c).flatten() for c in classes}
    small = [c for c, idx in members.items() if len(idx) < k]
    if small:
        raise RobenchError(f"class {small[0]} has fewer than {k} training images; lower --samples-per-class")
    queues = {c: idx[torch.randperm(len(idx), generator=generator)] for c, idx in members.items()}
    cursor = dict.fromkeys(members, 0)
    for _ in range(max(1, len(labels) // batch_size)):
        chosen = classes[torch.randperm(len(classes), generator=generator)[:per_batch]]
        parts = []
        for c in chosen.tolist():
            if cursor[c] + k > len(queues[c]):
                queues[c] = members[c][torch.randperm(len(members[c]), generator=generator)]
                cursor[c] = 0
            parts.append(queues[c][cursor[c] : cursor[c] + k])
            cursor[c] += k
        yield torch.cat(parts)


def epoch_batches(
    labels: torch.Tensor, batch_size: int, samples_per_class: int | None, generator: torch.Generator
) -> list[torch.Tensor]:
    """All batches of one epoch: balanced when ``samples_per_class`` is set, else shuffled."""
    if samples_per_class:
        return list(balanced_batches(labels, batch_size, samples_per_class, generator))
    return list(shuffled_batches(len(labels), batch_size, generator))
