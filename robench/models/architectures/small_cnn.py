"""A small two-block convolutional feature extractor for CPU runs (``small-cnn``)."""

from __future__ import annotations

from torch import nn


class SmallCNNFeatures(nn.Sequential):
    """conv3x3(C->32)-BN-ReLU-maxpool2, conv3x3(32->64)-BN-ReLU-maxpool2, flatten.

    A plain LeNet/VGG-style stack (no paper of its own) sized so that a Fashion-MNIST
    epoch trains in seconds on two CPU cores. Input ``(B, C, H, W)`` normalized images
    with ``H, W >= 4``; output ``(B, 64 * (H // 4) * (W // 4))``, e.g. ``(B, 256)`` for
    8x8 and ``(B, 3136)`` for 28x28 images.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], channels: tuple[int, int] = (32, 64)):
        c1, c2 = channels
        super().__init__(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        height, width = image_size
        self.out_features = c2 * (height // 4) * (width // 4)
