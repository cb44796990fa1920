"""Shake-Shake-Image 26 2xkd feature extractor (Gastaldi, 2017, arXiv:1705.07485).

Follows the paper's CIFAR network and hysts/pytorch_shake_shake: a 3x3 conv stem with 16
channels, three stages of four two-branch residual blocks (widths k, 2k, 4k; stride 2 at
the start of stages 2 and 3), "Shake-Shake-Image" mixing (alpha and beta drawn per image
in training, 0.5 at test), the paper's two-path shifted 1x1-conv shortcut, final ReLU
and global average pooling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ShakeShakeFunction(torch.autograd.Function):
    """Shake-shake mixing of two branches (Gastaldi, 2017, Sec. 2.1).

    Forward: ``alpha * a + (1 - alpha) * b``. Backward: the incoming gradient ``g`` goes
    to the branches as ``beta * g`` and ``(1 - beta) * g`` (beta independent of alpha);
    alpha and beta get no gradient. ``a, b`` are ``(B, C, H, W)``; ``alpha, beta`` are
    anything broadcastable to them, e.g. ``(B, 1, 1, 1)`` for per-image coefficients.
    Written in the ``setup_context`` style with a generated vmap rule, so that it works
    under ``torch.func`` transforms (the input-Jacobian penalties use ``vjp`` + ``vmap``),
    and its backward is differentiable (double back-propagation).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return alpha * a + (1 - alpha) * b

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[3])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (beta,) = ctx.saved_tensors
        grad_a = grad * beta if ctx.needs_input_grad[0] else None
        grad_b = grad * (1 - beta) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None


def shake_shake(a: torch.Tensor, b: torch.Tensor, training: bool) -> torch.Tensor:
    """Mix two ``(B, C, H, W)`` branch outputs, Shake-Shake-Image style.

    In training, alpha and beta are drawn independently per image from U[0, 1]
    (shape ``(B, 1, 1, 1)``); at evaluation the mix is the deterministic ``0.5 * (a + b)``.
    """
    if not training:
        return 0.5 * (a + b)
    shape = (a.shape[0], 1, 1, 1)
    alpha = torch.rand(shape, device=a.device, dtype=a.dtype)
    beta = torch.rand(shape, device=a.device, dtype=a.dtype)
    return ShakeShakeFunction.apply(a, b, alpha, beta)


class ShakeShortcut(nn.Module):
    """Gastaldi (2017) shortcut for a change of shape: ReLU, two shifted 1x1-conv paths, BN.

    Path 1: ``AvgPool2d(1, stride)`` then conv1x1 ``in -> out // 2``. Path 2: the input
    shifted by one pixel (``x[:, :, 1:, 1:]`` zero-padded back at the end), the same pool,
    conv1x1 ``in -> out - out // 2``. The paths are concatenated and batch-normalized.
    Input ``(B, in, H, W)``; output ``(B, out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        half = out_channels // 2
        self.pool = nn.AvgPool2d(1, stride=stride)
        self.conv1 = nn.Conv2d(in_channels, half, 1, bias=False)
        self.conv2 = nn.Conv2d(in_channels, out_channels - half, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        path1 = self.conv1(self.pool(x))
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        path2 = self.conv2(self.pool(shifted))
        return self.bn(torch.cat([path1, path2], dim=1))


def _branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """One residual branch: ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ShakeBlock(nn.Module):
    """Two-branch residual block: ``shortcut(x) + shake_shake(branch1(x), branch2(x))``.

    Input ``(B, in, H, W)``; output ``(B, out, ceil(H / stride), ceil(W / stride))``. The
    shortcut is the identity when the shape is unchanged, else :class:`ShakeShortcut`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.branch1 = _branch(in_channels, out_channels, stride)
        self.branch2 = _branch(in_channels, out_channels, stride)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ShakeShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake_shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeFeatures(nn.Module):
    """Shake-Shake-Image 26 2xkd (Gastaldi, 2017) up to the global average pool.

    ``depth = 26`` gives ``(26 - 2) / 6 = 4`` blocks per stage. Stage widths ``k, 2k, 4k``
    (``k = 96`` / ``112`` for the paper's 2x96d / 2x112d, i.e. widen factors 6 / 7 over
    the 16-channel stem). Input ``(B, C, H, W)`` normalized images of any size; output
    ``(B, 4k)``.
    """

    def __init__(self, in_channels: int, base_width: int, depth: int = 26, stem_channels: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"shake-shake depth must be 6n + 2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
        )
        blocks = []
        previous = stem_channels
        for channels, stride in ((base_width, 1), (2 * base_width, 2), (4 * base_width, 2)):
            for index in range(blocks_per_stage):
                blocks.append(ShakeBlock(previous, channels, stride if index == 0 else 1))
                previous = channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = previous
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x)))
