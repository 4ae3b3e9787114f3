"""Wide ResNets for CIFAR (Zagoruyko & Komodakis, BMVC 2016, arXiv:1605.07146).

Pre-activation basic blocks (BN-ReLU-3x3 conv, dropout, BN-ReLU-3x3 conv), three groups
of widths `16k, 32k, 64k`; WRN-28-10: `depth=28, widen_factor=10` (4 blocks per group).
"""

from __future__ import annotations

from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv
from models.common import global_avg_pool


class WideBlock(nn.Module):
    """`(B, C, H, W) -> (B, width, H / stride, W / stride)`."""

    def __init__(self, in_channels: int, width: int, stride: int, dropout: float, conv: ConvFactory) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            conv(in_channels, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            conv(width, width, 3, padding=1, bias=False),
        )
        if stride == 1 and in_channels == width:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class WideResNet(nn.Module):
    """`(B, C, H, W) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        depth: `6 n + 4` (n blocks per group).
        widen_factor: `k`, the group widths are `16k, 32k, 64k`.
        dropout: dropout between the two convolutions of a block.
        conv: convolution family factory for the 3x3 convolutions.
    """

    def __init__(
        self, in_channels: int, num_classes: int, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, conv: ConvFactory = standard_conv
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"wide_resnet: depth={depth} must be 6 n + 4 with n >= 1 (e.g. 16, 28, 40)")
        blocks_per_group = (depth - 4) // 6
        layers: list[nn.Module] = [conv(in_channels, 16, 3, padding=1, bias=False)]
        channels = 16
        for group, width in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
            for position in range(blocks_per_group):
                stride = 2 if group > 0 and position == 0 else 1
                layers.append(WideBlock(channels, width, stride, dropout, conv))
                channels = width
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(global_avg_pool(2), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
