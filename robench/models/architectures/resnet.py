"""CIFAR-style ResNet-18 feature extractor (He et al., 2016), with a width multiplier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """He et al. (2016) basic residual block: two 3x3 convs with BN, identity shortcut.

    When the stride or the channel count changes, the shortcut is the paper's projection
    (option B): conv1x1 with the same stride, then BN. Input ``(B, in, H, W)``, output
    ``(B, out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Features(nn.Module):
    """ResNet-18 (He et al., 2016) in its CIFAR form, up to the global average pool.

    3x3 stem conv (stride 1, no max-pool) with BN and ReLU, four stages of two
    :class:`BasicBlock` each with widths ``64, 128, 256, 512`` times ``width``
    (``max(1, round(c * width))``) and strides ``1, 2, 2, 2``, then global average
    pooling. Input ``(B, C, H, W)`` normalized images of any size; output
    ``(B, out_features)`` with ``out_features = max(1, round(512 * width))``.
    """

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        previous = widths[0]
        for channels, stride in zip(widths, (1, 2, 2, 2)):
            stages.append(nn.Sequential(BasicBlock(previous, channels, stride), BasicBlock(channels, channels, 1)))
            previous = channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = widths[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))
