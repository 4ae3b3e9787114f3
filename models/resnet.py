"""ResNets (He et al., CVPR 2016, arXiv:1512.03385) for CIFAR and ImageNet, post- or
pre-activation (He et al., ECCV 2016, arXiv:1603.05027).

One class covers both families: the CIFAR stem (one 3x3 conv, as in ResNet-20/56/110)
or the ImageNet stem (7x7/2 conv and 3x3/2 max-pool), basic or bottleneck blocks, and
any stage layout. Spatial convolutions come from the `conv` factory, so the layer
families can swap them. Pre-activation blocks are those of the Oct-ResNets of the octave
paper's ablation (facebookresearch/OctConv, `utils/symbol/symbol_resblock.py`,
`BottleNeckV2`): BN-ReLU before every convolution (the projection shortcut's included),
nothing after the sum, one BN-ReLU before the pooled head.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv
from models.common import global_avg_pool


def _unit(conv: nn.Module, channels_in: int, channels_out: int, pre_activation: bool) -> list[nn.Module]:
    """One convolution with its norm: conv-BN (post-activation) or BN-ReLU-conv (pre-activation)."""
    if pre_activation:
        return [nn.BatchNorm2d(channels_in), nn.ReLU(inplace=True), conv]
    return [conv, nn.BatchNorm2d(channels_out)]


class _ResidualBlock(nn.Module):
    """`activation(residual(x) + shortcut(x))`; the shortcut is the identity or a strided 1x1
    projection. Post-activation: the activation is a ReLU and the residual ends in a
    BatchNorm; pre-activation: no activation, and the projection has its own BN-ReLU.

    Subclasses build `residual` from `(in_channels, width, stride, conv, pre_activation)`.
    """

    expansion = 1

    def __init__(self, residual: nn.Sequential, in_channels: int, out_channels: int, stride: int, pre_activation: bool) -> None:
        super().__init__()
        self.residual = residual
        self.pre_activation = pre_activation
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.shortcut = nn.Sequential(*_unit(projection, in_channels, out_channels, pre_activation))
        self.activation = nn.Identity() if pre_activation else nn.ReLU(inplace=True)

    def last_norm(self) -> nn.BatchNorm2d:
        """The residual's final BatchNorm (post-activation blocks only)."""
        return self.residual[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.residual(x) + self.shortcut(x))


def _residual(units: list[list[nn.Module]], pre_activation: bool) -> nn.Sequential:
    """The units in order; post-activation units are joined by ReLUs (pre-activation ones start with theirs)."""
    layers = list(units[0])
    for unit in units[1:]:
        layers += unit if pre_activation else [nn.ReLU(inplace=True), *unit]
    return nn.Sequential(*layers)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, conv: ConvFactory, pre_activation: bool = False) -> None:
        residual = _residual([
            _unit(conv(in_channels, width, 3, stride=stride, padding=1, bias=False), in_channels, width, pre_activation),
            _unit(conv(width, width, 3, padding=1, bias=False), width, width, pre_activation),
        ], pre_activation)  # fmt: skip
        super().__init__(residual, in_channels, width, stride, pre_activation)


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by `expansion` (4; the torchvision "ResNet v1.5" stride placement)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, conv: ConvFactory, expansion: int = 4, pre_activation: bool = False) -> None:
        out_channels = width * expansion
        residual = _residual([
            _unit(nn.Conv2d(in_channels, width, 1, bias=False), in_channels, width, pre_activation),
            _unit(conv(width, width, 3, stride=stride, padding=1, bias=False), width, width, pre_activation),
            _unit(nn.Conv2d(width, out_channels, 1, bias=False), width, out_channels, pre_activation),
        ], pre_activation)  # fmt: skip
        super().__init__(residual, in_channels, out_channels, stride, pre_activation)


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
        zero_init_residual: start every block as the identity (zero last BN scale);
            post-activation only (a pre-activation block ends in a convolution).
        bottleneck_expansion: output width / base width of bottleneck blocks (4; 2 in the
            tiny ResNets of the checkered-subsampling paper, arXiv 1805.10766).
        pre_activation: pre-activation blocks and a BN-ReLU before the head (arXiv:1603.05027).
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
        pre_activation: bool = False,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"resnet: block={block!r} is not one of {sorted(_BLOCKS)}")
        if pre_activation and zero_init_residual:
            raise ValueError("net.zero_init_residual=true needs post-activation blocks (net.pre_activation=false): "
                             "a pre-activation block ends in a convolution, not a BatchNorm")  # fmt: skip
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
                blocks.append(block_type(channels, width, stride, conv, **expansion, pre_activation=pre_activation))
                channels = width * expansion.get("expansion", block_type.expansion)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        tail = [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if pre_activation else []
        self.head = nn.Sequential(*tail, global_avg_pool(2), nn.Linear(channels, num_classes))
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
