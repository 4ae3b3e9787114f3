"""The `box` convolution family for models that take a `conv` factory (`conv=box`)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.box.box_conv import BoxConv2d
from layers.factory import standard_conv


class BoxPointwiseConv2d(nn.Module):
    """Box filters followed by a 1x1 convolution: `(B, C_in, H, W) -> (B, C_out, H', W')`.

    The paper's replacement for a dense k x k convolution: each input channel is filtered
    by `num_filters` learned boxes (`BoxConv2d`), then a 1x1 convolution mixes the
    `C_in * num_filters` responses into `C_out` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, num_filters: int, max_input_size: Sequence[int], stride: int = 1, bias: bool = True, **box_options) -> None:
        super().__init__()
        height, width = max_input_size
        self.box = BoxConv2d(in_channels, num_filters, height, width, stride=stride, **box_options)
        self.mix = nn.Conv2d(in_channels * num_filters, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.mix(self.box(x))


def box_conv(
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
    num_filters: int = 4,
    max_input_size: Sequence[int] = (32, 32),
    reparametrization_factor: float = 8,
    normalize: bool = True,
    exact: bool = True,
) -> nn.Module:
    """`ConvFactory` of the box family: k x k convolutions (k > 1) become
    `BoxPointwiseConv2d`; 1x1 convolutions stay plain (they have no extent to learn).

    `max_input_size` bounds the boxes (the input resolution is a safe choice); padding is
    implied (the output keeps the input size up to the stride).
    """
    if dim != 2:
        raise ValueError(f"conv=box: only 2-D convolutions can become box convolutions, the net asks for dim={dim}")
    if kernel_size == 1:
        return standard_conv(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias, dim=dim)
    if groups != 1 or dilation != 1:
        raise ValueError(f"conv=box replaces dense convolutions; got groups={groups}, dilation={dilation}")
    if len(max_input_size) != 2:
        raise ValueError(f"conv=box: max_input_size={list(max_input_size)} must be [height, width]")
    return BoxPointwiseConv2d(
        in_channels, out_channels, num_filters, max_input_size, stride=stride, bias=bias,
        reparametrization_factor=reparametrization_factor, normalize=normalize, exact=exact,
    )  # fmt: skip
