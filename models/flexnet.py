"""FlexNet and FlexTCN (Romero et al., "FlexConv: Continuous Kernel Convolutions with
Differentiable Kernel Sizes", ICLR 2022, arXiv:2110.08059) and CKCNN (Romero et al.,
"CKConv: Continuous Kernel Convolution for Sequential Data", ICLR 2022, arXiv:2102.02611).

Residual nets without pooling or striding: every convolution sees the whole input at the
input's resolution, and the kernels (FlexConv, CKConv) decide how much of it they use.
FlexNet classifies images after global average pooling, FlexTCN/CKCNN classify sequences
from their last (causal) time step. The convolutions come from the `conv` factory
(`conv=flex` for FlexNet/FlexTCN, `conv=ckconv` for CKCNN).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.factory import ConvFactory
from layers.flexconv import flex_conv
from models.common import batch_norm, global_avg_pool, spatial_rank


def block_widths(hidden_channels: int, num_blocks: int, block_width_factors: Sequence[float], net: str) -> list[int]:
    """Channels of each block from the reference's pairs `[factor, count, factor, count, ...]`
    (e.g. `[1.0, 2, 1.5, 3, 2.0, 2]`: two blocks of `hidden`, three of `1.5 hidden`, two of
    `2 hidden`); an empty list keeps every block at `hidden_channels`."""
    if hidden_channels < 1 or num_blocks < 1:
        raise ValueError(f"{net}: hidden_channels={hidden_channels} and num_blocks={num_blocks} must be >= 1")
    if not block_width_factors:
        return [hidden_channels] * num_blocks
    factors = list(block_width_factors)
    if len(factors) % 2 or any(count < 0 or count != int(count) for count in factors[1::2]):
        raise ValueError(f"{net}: block_width_factors={factors} must be pairs [factor, count, ...] with whole counts")
    widths = [int(hidden_channels * factor) for factor, count in zip(factors[::2], factors[1::2]) for _ in range(int(count))]
    if len(widths) != num_blocks:
        raise ValueError(f"{net}: block_width_factors={factors} describe {len(widths)} blocks, num_blocks={num_blocks}")
    return widths


class ResidualBlock(nn.Module):
    """`(B, C_in, *S) -> (B, C_out, *S)`: conv-BN-ReLU-dropout-conv-BN (+ ReLU-dropout in the
    TCN variant, as in Bai et al. 2018) plus the input (through a 1x1 conv when the widths
    differ), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, conv: ConvFactory, dim: int, dropout: float, tcn: bool) -> None:
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, 3, padding=1, dim=dim)
        self.norm1 = batch_norm(out_channels, dim)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, dim=dim)
        self.norm2 = batch_norm(out_channels, dim)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.tcn = tcn
        pointwise = nn.Conv1d if dim == 1 else nn.Conv2d
        self.shortcut = nn.Identity() if in_channels == out_channels else pointwise(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout(self.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        if self.tcn:
            out = self.dropout(self.relu(out))
        return self.relu(out + self.shortcut(x))


def _check_dropout(dropout: float, net: str) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{net}: dropout={dropout} must be in [0, 1)")


class FlexNet(nn.Module):
    """FlexNet-N for images, `(B, C, H, W) -> (B, K)`: a stem convolution (conv-BN-ReLU), N
    residual blocks, global average pooling and a linear classifier.

    The paper's FlexNet-7 is `hidden_channels=24, block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]`
    (0.67M parameters with MAGNet kernels of 32 units).

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        input_size: `[H, W]` (checked to be 2-D).
        hidden_channels: width of the stem (and the unit of `block_width_factors`).
        num_blocks: residual blocks `N`.
        block_width_factors: pairs `[factor, count, ...]` (see `block_widths`).
        dropout: dropout inside the blocks.
        conv: convolution family factory (`conv=flex`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        hidden_channels: int = 24,
        num_blocks: int = 7,
        block_width_factors: Sequence[float] = (1.0, 2, 1.5, 3, 2.0, 2),
        dropout: float = 0.2,
        conv: ConvFactory = flex_conv,
    ) -> None:
        super().__init__()
        if spatial_rank(input_size, "flexnet") != 2:
            raise ValueError(f"flexnet: input_size={list(input_size)} must be [height, width]; use a flextcn net for sequences")
        _check_dropout(dropout, "flexnet")
        widths = block_widths(hidden_channels, num_blocks, block_width_factors, "flexnet")
        self.stem = nn.Sequential(conv(in_channels, hidden_channels, 3, padding=1, dim=2), batch_norm(hidden_channels, 2), nn.ReLU())
        channels = [hidden_channels, *widths]
        self.blocks = nn.Sequential(*(ResidualBlock(a, b, conv, 2, dropout, tcn=False) for a, b in zip(channels, channels[1:])))
        self.pool = global_avg_pool(2)
        self.head = nn.Linear(widths[-1], num_classes)
        nn.init.kaiming_normal_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))))


class FlexTCN(nn.Module):
    """FlexTCN-N (and CKCNN) for sequences, `(B, C, L) -> (B, K)`: N residual TCN blocks of
    causal convolutions, then a linear classifier on the last time step (which has seen
    the whole sequence).

    The paper's FlexTCN-2/4/6 are `hidden_channels=30` with 2/4/6 blocks; CKCNN is the
    2-block net with CKConv and SIREN kernels.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        input_size: `[L]` (checked to be 1-D).
        hidden_channels, num_blocks, block_width_factors, dropout, conv: as for `FlexNet`
            (`conv=flex` or `conv=ckconv`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        hidden_channels: int = 30,
        num_blocks: int = 2,
        block_width_factors: Sequence[float] = (),
        dropout: float = 0.0,
        conv: ConvFactory = flex_conv,
    ) -> None:
        super().__init__()
        if spatial_rank(input_size, "flextcn") != 1:
            raise ValueError(f"flextcn: input_size={list(input_size)} must be [length]; use a sequence dataset (e.g. smnist) or a flexnet for images")
        _check_dropout(dropout, "flextcn")
        widths = block_widths(hidden_channels, num_blocks, block_width_factors, "flextcn")
        channels = [in_channels, *widths]
        self.blocks = nn.Sequential(*(ResidualBlock(a, b, conv, 1, dropout, tcn=True) for a, b in zip(channels, channels[1:])))
        self.head = nn.Linear(widths[-1], num_classes)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(x)[:, :, -1])
