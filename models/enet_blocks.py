"""Building blocks of ENet (Paszke et al., "ENet: A Deep Neural Network Architecture for
Real-Time Semantic Segmentation", 2016, arXiv:1606.02147).

Every bottleneck squeezes to a quarter of its output channels, applies one spatial
convolution and expands back; BN uses eps 1e-3 as in the original Torch code. The layer
details (biases, PReLU placement, dropout) follow the box-convolution authors' PyTorch
ENet, so that parameter counts match theirs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3
ASYMMETRIC_KERNEL = 5


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class InitialBlock(nn.Module):
    """`(B, C, H, W) -> (B, out_channels, H/2, W/2)`: PReLU(BN(concat(maxpool 2x2/2, conv 3x3/2))).

    The convolution produces `out_channels - C` channels (13 for RGB input), the
    max-pool passes the `C` input channels through.
    """

    def __init__(self, in_channels: int, out_channels: int = 16) -> None:
        super().__init__()
        if not 0 < in_channels < out_channels:
            raise ValueError(f"InitialBlock: in_channels={in_channels} must be in [1, {out_channels - 1}]")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = _batch_norm(out_channels)
        self.prelu = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(torch.cat([self.pool(x), self.conv(x)], dim=1)))


def _residual_branch(first_conv: nn.Conv2d, spatial: list[nn.Module], internal: int, out_channels: int, dropout: float) -> nn.Sequential:
    """first_conv -> BN -> PReLU -> spatial conv(s) -> BN -> PReLU -> 1x1 expand -> BN -> Dropout2d."""
    return nn.Sequential(
        first_conv,
        _batch_norm(internal),
        nn.PReLU(internal),
        *spatial,
        _batch_norm(internal),
        nn.PReLU(internal),
        nn.Conv2d(internal, out_channels, 1, bias=False),
        _batch_norm(out_channels),
        nn.Dropout2d(dropout),
    )


class Bottleneck(nn.Module):
    """`(B, C, H, W) -> (B, C, H, W)`: `PReLU(x + branch(x))`, ENet's regular, dilated or asymmetric block.

    Args:
        channels: input and output channels `C` (the branch works on `C / 4`).
        dropout: channel dropout rate at the end of the branch.
        dilation: dilation of the 3x3 convolution (1: regular block).
        asymmetric: a 5x1 then a 1x5 convolution (the 1x5 with a bias) instead of the 3x3.
    """

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1, asymmetric: bool = False) -> None:
        super().__init__()
        if asymmetric and dilation != 1:
            raise ValueError(f"Bottleneck: an asymmetric block takes no dilation (got dilation={dilation})")
        internal = channels // 4
        if asymmetric:
            pad = ASYMMETRIC_KERNEL // 2
            spatial = [
                nn.Conv2d(internal, internal, (ASYMMETRIC_KERNEL, 1), padding=(pad, 0), bias=False),
                nn.Conv2d(internal, internal, (1, ASYMMETRIC_KERNEL), padding=(0, pad)),
            ]
        else:
            spatial = [nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation, bias=False)]
        self.residual = _residual_branch(nn.Conv2d(channels, internal, 1, bias=False), spatial, internal, channels, dropout)
        self.prelu = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(x + self.residual(x))


class DownsamplingBottleneck(nn.Module):
    """`(B, C_in, H, W) -> ((B, C_out, H/2, W/2), pooling indices)`.

    The branch opens with a 2x2/2 convolution; the shortcut max-pools 2x2/2 (keeping the
    indices for the matching `UpsamplingBottleneck`) and zero-pads to `C_out` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"DownsamplingBottleneck: out_channels={out_channels} < in_channels={in_channels}")
        internal = out_channels // 4
        first_conv = nn.Conv2d(in_channels, internal, 2, stride=2, bias=False)
        spatial = [nn.Conv2d(internal, internal, 3, padding=1, bias=False)]
        self.residual = _residual_branch(first_conv, spatial, internal, out_channels, dropout)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.extra_channels = out_channels - in_channels
        self.prelu = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shortcut, indices = self.pool(x)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return self.prelu(shortcut + self.residual(x)), indices


class UpsamplingBottleneck(nn.Module):
    """`(B, C_in, H, W), indices -> (B, C_out, 2H, 2W)`: `ReLU(unpool(shortcut(x)) + branch(x))`.

    The shortcut is a 1x1 convolution and BN, max-unpooled with the indices of the
    matching `DownsamplingBottleneck`; the branch upsamples with a 3x3/2 transposed
    convolution. ReLU throughout, no dropout.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        internal = out_channels // 4
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, internal, 1, bias=False),
            _batch_norm(internal),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1),
            _batch_norm(internal),
            nn.ReLU(inplace=True),
            nn.Conv2d(internal, out_channels, 1, bias=False),
            _batch_norm(out_channels),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), _batch_norm(out_channels))
        self.unpool = nn.MaxUnpool2d(2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        return self.relu(self.unpool(self.shortcut(x), indices) + self.residual(x))
