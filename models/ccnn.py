"""The toy MNIST CCNN of Sadigh & Sen (arXiv 1805.10766) and its plain CNN twin.

3x3 convolutions 1 -> 32 -> 32 -> 45 (stride 2) -> 45 -> 64, each followed by BatchNorm and
ReLU, then Dropout 0.2, global average pooling and a linear classifier. The CCNN subsamples
with checkered sampling (two submaps after the stride-2 layer) and its last convolution
mixes both submaps (`depth=2`): 93,833 parameters. The CNN twin is the same net with plain
layers: 67,913 parameters. `conv=checkered` on the twin gives a CCNN whose last
convolution has depth 1 (67,913 parameters).
"""

from __future__ import annotations

from torch import Tensor, nn

from layers.checkered import CheckeredConv2d

_WIDTHS = (32, 32, 45, 45, 64)
_STRIDED = 2  # index of the stride-2 convolution


class ToyMNISTNet(nn.Module):
    """`(B, C, H, W) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        checkered: the CCNN (checkered layers, last convolution of depth 2) or the CNN twin.
        dropout: dropout probability before the pooling (channel dropout, as in the paper).
        sampler: sampler of the CCNN's stride-2 layer (`naive | lattice | random | three_quarters | complete`).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, checkered: bool = True, dropout: float = 0.2, sampler: str = "naive") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(_WIDTHS):
            stride = 2 if index == _STRIDED else 1
            if checkered:
                depth = 2 if index == len(_WIDTHS) - 1 else 1
                layers += [CheckeredConv2d(channels, width, 3, stride, 1, depth=depth, sampler=sampler), nn.BatchNorm3d(width)]
            else:
                layers += [nn.Conv2d(channels, width, 3, stride, 1), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU(inplace=True))
            channels = width
        layers.append(nn.Dropout3d(dropout) if checkered else nn.Dropout2d(dropout))
        self.features = nn.Sequential(*layers)
        # Averaging over (S, H, W) is the paper's head: every submap and pixel counts alike.
        self.pool = nn.AdaptiveAvgPool3d(1) if checkered else nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
