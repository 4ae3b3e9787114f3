"""The contract between models and convolution families.

A model takes a `conv` factory and calls it for every spatial convolution it builds, so
that `conv=<family>` on the command line swaps a model's convolutions without a new
model file. Every family provides a factory with the signature of `ConvFactory`;
`standard_conv` is the plain `nn.ConvNd` family.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

_CONV_BY_DIM = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvFactory(Protocol):
    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        dim: int = 2,
    ) -> nn.Module:
        """Build a convolution `(B, in_channels, *S) -> (B, out_channels, *S')` of rank `dim`."""
        ...


def standard_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    dim: int = 2,
) -> nn.Module:
    """The `standard` family: `nn.Conv1d`/`nn.Conv2d`/`nn.Conv3d` for `dim` 1/2/3."""
    if dim not in _CONV_BY_DIM:
        raise ValueError(f"standard_conv: dim={dim} is not one of {sorted(_CONV_BY_DIM)}")
    return _CONV_BY_DIM[dim](
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias
    )
