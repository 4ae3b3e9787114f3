"""ERFNet (Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-Time
Semantic Segmentation", IEEE T-ITS 2017) and BoxERFNet (Burkov & Lempitsky, "Deep Neural
Networks with Box Convolutions", NeurIPS 2018).

Layout: three downsampler blocks (to stride 8) with non-bottleneck-1D blocks at 64 and
128 channels between them, then transposed-convolution upsamplers with non-bottleneck-1D
blocks at 64 and 16 channels, and a 3x3/2 transposed convolution to the class logits.
Layer details (no biases, dropout in the downsamplers, the head) follow the box-convolution
authors' PyTorch code, so that parameter counts match theirs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from models.box_blocks import BoxBottleneck, check_input, feature_map_sizes, scale_dropout_


class DownsamplerBlock(nn.Module):
    """`(B, C_in, H, W) -> (B, C_out, H/2, W/2)`: ReLU(Dropout2d(BN(concat(maxpool 2x2/2, conv 3x3/2))))."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 < in_channels < out_channels:
            raise ValueError(f"DownsamplerBlock: in_channels={in_channels} must be in [1, {out_channels - 1}]")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.dropout(self.bn(torch.cat([self.pool(x), self.conv(x)], dim=1))))


class NonBottleneck1D(nn.Module):
    """`(B, C, H, W) -> (B, C, H, W)`: `ReLU(x + branch(x))`, the branch being two factorised
    3x3 convolutions (3x1, ReLU, 1x3, BN, ReLU), the second one dilated, then Dropout2d."""

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        d = dilation
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1), bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d), bias=False),
            nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.residual(x))


def upsampler_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """`(B, C_in, H, W) -> (B, C_out, 2H, 2W)`: ReLU(BN(3x3/2 transposed convolution))."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _ERFNetLayout(nn.Module):
    """`(B, C, H, W) -> (B, K, H, W)`: encoder (downsamplers to 16, 64 and 128 channels with
    the given blocks after the last two), decoder (upsamplers to 64 and 16 channels, each
    followed by the given blocks) and a 3x3/2 transposed-convolution head."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        num_classes: int,
        blocks: Sequence[Sequence[nn.Module]],
        dropout_scale: float,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes={num_classes} must be >= 1")
        if not 0 < in_channels < 16:
            raise ValueError(f"{name}: in_channels={in_channels} must be in [1, 15] (the first downsampler outputs 16)")
        self.net_name = name
        blocks64, blocks128, decoder64, decoder16 = blocks
        self.encoder = nn.Sequential(
            DownsamplerBlock(in_channels, 16),
            DownsamplerBlock(16, 64, 0.03),
            *blocks64,
            DownsamplerBlock(64, 128, 0.3),
            *blocks128,
        )
        self.decoder = nn.Sequential(upsampler_block(128, 64), *decoder64, upsampler_block(64, 16), *decoder16)
        self.head = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, output_padding=1)
        scale_dropout_(self, dropout_scale, name)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.net_name)
        return self.head(self.decoder(self.encoder(x)))


class ERFNet(_ERFNetLayout):
    """ERFNet: `(B, C, H, W) -> (B, K, H, W)`, `H` and `W` multiples of 8.

    Five non-bottleneck-1D blocks at 64 channels, eight at 128 (dilations 2, 4, 8, 16
    twice), two at 64 and two at 16 channels in the decoder.

    Args:
        in_channels: input channels `C` (at most 15).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs (checked; ERFNet itself works at any multiple of 8).
        dropout_scale: multiplies every dropout rate (0.03 at 64 channels, 0.3 at 128; 0 disables).
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: Sequence[int] = (512, 1024), dropout_scale: float = 1.0) -> None:
        feature_map_sizes(input_size, "erfnet")
        blocks = [
            [NonBottleneck1D(64, 0.03) for _ in range(5)],
            [NonBottleneck1D(128, 0.3, dilation) for dilation in (2, 4, 8, 16, 2, 4, 8, 16)],
            [NonBottleneck1D(64), NonBottleneck1D(64)],
            [NonBottleneck1D(16), NonBottleneck1D(16)],
        ]
        super().__init__("erfnet", in_channels, num_classes, blocks, dropout_scale)


class BoxERFNet(_ERFNetLayout):
    """ERFNet with box blocks: one non-bottleneck-1D block and one box block at 64
    channels, then four pairs of (non-bottleneck-1D with dilation 2 or 4, box block) at 128
    channels, and one non-bottleneck-1D block per decoder stage.

    Args:
        in_channels: input channels `C` (at most 15).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs; the box layers at stride `s` get
            `max_input = (H / s, W / s)`.
        dropout_scale: multiplies every dropout rate (0 disables dropout).
        reparametrization_factor: of every box layer (1.5625 in the authors' code).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int] = (512, 1024),
        dropout_scale: float = 1.0,
        reparametrization_factor: float = 1.5625,
    ) -> None:
        sizes = feature_map_sizes(input_size, "boxerfnet")

        def box(channels: int, stride: int, dropout: float) -> BoxBottleneck:
            return BoxBottleneck(channels, 4, sizes[stride], dropout, reparametrization_factor, inner_relu=False)

        blocks128: list[nn.Module] = []
        for dilation in (2, 4, 2, 4):
            blocks128 += [NonBottleneck1D(128, 0.3, dilation), box(128, 8, 0.3)]
        blocks = [
            [NonBottleneck1D(64, 0.03), box(64, 4, 0.03)],
            blocks128,
            [NonBottleneck1D(64)],
            [NonBottleneck1D(16)],
        ]
        super().__init__("boxerfnet", in_channels, num_classes, blocks, dropout_scale)
