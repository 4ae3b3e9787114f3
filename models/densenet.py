"""DenseNet-BC for CIFAR (Huang et al., CVPR 2017, arXiv:1608.06993).

Pre-activation dense layers (BN-ReLU-1x1 conv to `bn_size * growth` channels, BN-ReLU-3x3
conv to `growth`), transitions that compress the channels and halve the resolution
(BN-ReLU-1x1 conv-2x2 average pool), the CIFAR stem (one 3x3 conv). DenseNet-BC-40:
`depth=40, growth_rate=12` (6 layers per block).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv
from models.common import global_avg_pool


class DenseLayer(nn.Module):
    """`(B, C, H, W) -> (B, C + growth_rate, H, W)`: the input concatenated with new features."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, conv: ConvFactory) -> None:
        super().__init__()
        self.new_features = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth_rate),
            nn.ReLU(inplace=True),
            conv(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.new_features(x)], 1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2, 2)
    )


class DenseNetBC(nn.Module):
    """`(B, C, H, W) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        depth: total depth `6 n + 4` (n dense layers per block, three blocks).
        growth_rate: channels each dense layer adds (`k`).
        compression: channel factor of the transitions (`theta`).
        bn_size: bottleneck width in units of `growth_rate`.
        conv: convolution family factory for the 3x3 convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 40,
        growth_rate: int = 12,
        compression: float = 0.5,
        bn_size: int = 4,
        conv: ConvFactory = standard_conv,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"densenet: depth={depth} must be 6 n + 4 with n >= 1 (e.g. 40, 100)")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"densenet: compression={compression} must be in (0, 1]")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth_rate
        stages: list[nn.Module] = [conv(in_channels, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                stages.append(DenseLayer(channels, growth_rate, bn_size, conv))
                channels += growth_rate
            if block < 2:
                compressed = int(channels * compression)
                stages.append(_transition(channels, compressed))
                channels = compressed
        stages += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(global_avg_pool(2), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
