"""ResNets (He et al., CVPR 2016, arXiv:1512.03385) for CIFAR and ImageNet.

One class covers both families: the CIFAR stem (one 3x3 conv, as in ResNet-20/56/110)
or the ImageNet stem (7x7/2 conv and 3x3/2 max-pool), basic or bottleneck blocks, and
any stage layout. Spatial convolutions come from the `conv` factory, so the layer
families can swap them.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv
from models.common import global_avg_pool


class _ResidualBlock(nn.Module):
    """`ReLU(residual(x) + shortcut(x))`; the shortcut is the identity or a strided 1x1 projection.

    Subclasses build `residual` (ending in a BatchNorm) from `(in_channels, width, stride, conv)`.
    """

    expansion = 1

    def __init__(self, residual: nn.Sequential, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = residual
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.residual[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, conv: ConvFactory) -> None:
        residual = nn.Sequential(
            conv(in_channels, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            conv(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        super().__init__(residual, in_channels, width, stride)


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by `expansion` (4; the torchvision "ResNet v1.5" stride placement)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, conv: ConvFactory, expansion: int = 4) -> None:
        out_channels = width * expansion
        residual = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            conv(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        super().__init__(residual, in_channels, out_channels, stride)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """`(B, C, H, W) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        block: `basic` or `bottleneck`.
        layers: blocks per stage, e.g. `[3, 3, 3]` (ResNet-20) or `[3, 4, 6, 3]` (ResNet-50).
        widths: base width of each stage (the first stage keeps the resolution, the others halve it).
        stem: `cifar` (3x3 conv) or `imagenet` (7x7/2 conv + 3x3/2 max-pool).
        zero_init_residual: start every block as the identity (zero last BN scale).
        bottleneck_expansion: output width / base width of bottleneck blocks (4; 2 in the
            tiny ResNets of the checkered-subsampling paper, arXiv 1805.10766).
        conv: convolution family factory for the 3x3 convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        block: str = "basic",
        layers: Sequence[int] = (3, 3, 3),
        widths: Sequence[int] = (16, 32, 64),
        stem: str = "cifar",
        zero_init_residual: bool = True,
        conv: ConvFactory = standard_conv,
        bottleneck_expansion: int = 4,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"resnet: block={block!r} is not one of {sorted(_BLOCKS)}")
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(f"resnet: layers={list(layers)} and widths={list(widths)} need equal, positive lengths")
        block_type = _BLOCKS[block]
        expansion = {"expansion": bottleneck_expansion} if block == "bottleneck" else {}
        self.stem = self._make_stem(stem, in_channels, widths[0], conv)
        stages: list[nn.Module] = []
        channels = widths[0]
        for index, (depth, width) in enumerate(zip(layers, widths)):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block_type(channels, width, stride, conv, **expansion))
                channels = width * expansion.get("expansion", block_type.expansion)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(global_avg_pool(2), nn.Linear(channels, num_classes))
        self._init_weights(zero_init_residual)

    @staticmethod
    def _make_stem(stem: str, in_channels: int, width: int, conv: ConvFactory) -> nn.Module:
        if stem == "cifar":
            return nn.Sequential(conv(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True))
        if stem == "imagenet":
            return nn.Sequential(
                nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        raise ValueError(f"resnet: stem={stem!r} is not one of ['cifar', 'imagenet']")

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, _ResidualBlock):
                    nn.init.zeros_(module.last_norm().weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))
