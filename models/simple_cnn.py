"""A small VGG-style CNN for images and sequences (the default experiment's model)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.factory import ConvFactory, standard_conv
from models.common import batch_norm, global_avg_pool, max_pool, spatial_rank


class SimpleCNN(nn.Module):
    """Stages of `convs_per_stage` conv-BN-ReLU blocks with 2x max-pooling between stages,
    then global average pooling, dropout and a linear classifier.

    The rank of `input_size` picks the layers: `[H, W]` gives `(B, C, H, W) -> (B, K)`,
    `[L]` gives `(B, C, L) -> (B, K)`.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        input_size: `[H, W]` or `[L]` of the inputs.
        widths: channels of each stage.
        convs_per_stage: conv blocks per stage.
        kernel_size: kernel size of the convolutions (odd; padded to keep the size).
        dropout: dropout before the classifier.
        conv: convolution family factory.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        widths: Sequence[int] = (32, 64),
        convs_per_stage: int = 2,
        kernel_size: int = 3,
        dropout: float = 0.1,
        conv: ConvFactory = standard_conv,
    ) -> None:
        super().__init__()
        dim = spatial_rank(input_size, "simple_cnn")
        if kernel_size % 2 != 1:
            raise ValueError(f"simple_cnn: kernel_size={kernel_size} must be odd")
        if not widths or convs_per_stage < 1:
            raise ValueError(f"simple_cnn: needs widths (got {list(widths)}) and convs_per_stage >= 1")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(max_pool(2, dim))
            for _ in range(convs_per_stage):
                layers += [
                    conv(channels, width, kernel_size, padding=kernel_size // 2, bias=False, dim=dim),
                    batch_norm(width, dim),
                    nn.ReLU(inplace=True),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(global_avg_pool(dim), nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
