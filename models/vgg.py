"""VGG with batch norm for CIFAR (Simonyan & Zisserman, arXiv:1409.1556; BN: Ioffe & Szegedy).

The CIFAR form used by the checkered-subsampling paper (Sadigh & Sen, arXiv 1805.10766):
the VGG convolution stages with BatchNorm, five 2x2 max-pools (32x32 -> 1x1), then a
512-512-K classifier with dropout. VGG-11: configuration A.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """`(B, C, 32, 32) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        stages: output widths of the 3x3 convolutions, `"M"` for a 2x2 max-pool (default VGG-11).
        hidden: width of the two hidden classifier layers.
        dropout: dropout before each hidden classifier layer.
        conv: convolution family factory for the 3x3 convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stages: Sequence[int | str] = VGG11,
        hidden: int = 512,
        dropout: float = 0.5,
        conv: ConvFactory = standard_conv,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in stages:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            elif isinstance(item, int) and item > 0:
                layers += [conv(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
            else:
                raise ValueError(f"vgg: stages entry {item!r} is neither a positive width nor 'M'")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
