"""The `flex` and `ckconv` convolution families for models that take a `conv` factory
(`conv=flex`, `conv=ckconv`; kernel network from `kernel=`, mask options from `mask.*`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from layers.factory import standard_conv
from layers.flexconv.ckconv import CKConv1d, CKConv2d
from layers.flexconv.flexconv import FlexConv1d, FlexConv2d

_FLEX = {1: FlexConv1d, 2: FlexConv2d}
_CK = {1: CKConv1d, 2: CKConv2d}


def _continuous(
    family: dict[int, type[nn.Module]],
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    dilation: int,
    groups: int,
    bias: bool,
    dim: int,
    options: dict[str, Any],
) -> nn.Module:
    name = "flex" if family is _FLEX else "ckconv"
    if kernel_size == 1:  # pointwise convolutions have no extent to learn
        return standard_conv(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias, dim=dim)
    if dim not in (1, 2):
        raise ValueError(f"conv={name}: only 1-D and 2-D convolutions are continuous, the net asks for dim={dim}")
    if groups != 1 or dilation != 1:
        raise ValueError(f"conv={name} replaces dense convolutions; got groups={groups}, dilation={dilation}")
    return family[dim](in_channels, out_channels, stride=stride, bias=bias, **options)


def flex_conv(
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
    **options: Any,
) -> nn.Module:
    """`ConvFactory` of the FlexConv family: every `k x k` convolution (k > 1) becomes a
    `FlexConv1d`/`FlexConv2d` of the same channels and stride; 1x1 convolutions stay plain.

    The net's `kernel_size` and `padding` give way to the continuous kernel (`horizon`) and its
    implied padding (causal in 1-D, `same` in 2-D). `options` are `FlexConv`'s keyword
    arguments (`horizon`, `kernel_net`, `mask_*`, `regularize_*`, `impl`, ...).
    """
    return _continuous(_FLEX, in_channels, out_channels, kernel_size, stride, dilation, groups, bias, dim, options)


def ck_conv(
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
    **options: Any,
) -> nn.Module:
    """`ConvFactory` of the CKConv family: as `flex_conv`, with `CKConv1d`/`CKConv2d` (no mask, the kernel
    spans the whole horizon)."""
    return _continuous(_CK, in_channels, out_channels, kernel_size, stride, dilation, groups, bias, dim, options)
