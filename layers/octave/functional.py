"""Octave convolution as a function of the `(x_h, x_l)` pair (Chen et al., ICCV 2019, arXiv:1904.05049).

Two implementations with one contract: `octave_conv2d_reference` (in `reference.py`) runs
the four paths as four convolutions, literally as the paper writes them; `octave_conv2d`
here runs the paths that land on the same output at the same resolution as one
convolution over the channel-concatenated inputs, so a layer costs three convolution
launches at stride 1 and two at stride 2 instead of four (one more with
`high_to_low_downsample="strided_conv"`, whose high->low input is on another grid), and adds the upsampled
low->high term with one broadcast add instead of materialising the upsampled map.

Resolution rules (shared by both):
- the low-frequency map of a high map of size `(H, W)` has size `(ceil(H/2), ceil(W/2))`
  (`downsample`: 2x2 average pooling whose border windows average only their own pixels);
- low->high at stride 1 is convolved at low resolution, upsampled 2x (nearest) and cropped
  to the high output's exact size, so odd sizes work;
- the layer's stride 2 average-pools before the convolutions (never a strided convolution): high->high
  runs on `downsample(x_h)`, high->low on `downsample(downsample(x_h))`, low->low on
  `downsample(x_l)`, and low->high runs on `x_l` itself, already at the output's high
  resolution (as in the official code);
- high->low halves the resolution by average pooling (`high_to_low_downsample="avg_pool"`,
  the paper's choice) or, for the paper's Table 3 ablation, by convolving at stride 2
  (`"strided_conv"`: the output samples sit at the even pixels, half a pixel off the pooled
  grid).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


# How high->low halves the resolution (arXiv:1904.05049, Sec. 3.3 and Table 3).
HIGH_TO_LOW_DOWNSAMPLING = ("avg_pool", "strided_conv")


class OctaveWeights(NamedTuple):
    """The four path weights `(C_out_part, C_in_part / groups, k, k)`; None for a path that is off."""

    high_to_high: Tensor
    high_to_low: Tensor | None
    low_to_high: Tensor | None
    low_to_low: Tensor | None


def downsample(x: Tensor, factor: int = 2) -> Tensor:
    """`(B, C, H, W) -> (B, C, ceil(H/f), ceil(W/f))`: mean of each f x f window; partial
    border windows (odd sizes) average only the pixels they cover."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor, factor, ceil_mode=True)


def upsample_to(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """`(B, C, h, w) -> (B, C, H, W)`: nearest 2x upsampling cropped to `(H, W)`, `H <= 2h`, `W <= 2w`."""
    height, width = size
    return x.repeat_interleave(2, dim=-2)[..., :height, :].repeat_interleave(2, dim=-1)[..., :width]


class _AddUpsampled(torch.autograd.Function):
    """`high (B, C, 2h, 2w) + nearest-2x(low (B, C, h, w))` in one broadcast pass, in `high`'s
    memory format (channels last stays channels last). Autograd's own backward of the broadcast
    is a strided reduction several times slower than a 2x2 sum pooling (measured on CPU), so
    the low gradient is `4 * avg_pool2d(grad, 2)`."""

    @staticmethod
    def forward(ctx, high: Tensor, low: Tensor) -> Tensor:
        batch, channels, height, width = high.shape
        if high.is_contiguous(memory_format=torch.channels_last) and not high.is_contiguous():
            blocks = high.permute(0, 2, 3, 1).reshape(batch, height // 2, 2, width // 2, 2, channels)
            summed = blocks + low.permute(0, 2, 3, 1)[:, :, None, :, None, :]
            return summed.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        blocks = high.unflatten(-1, (width // 2, 2)).unflatten(-3, (height // 2, 2))
        return (blocks + low[:, :, :, None, :, None]).reshape(batch, channels, height, width)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        return grad, F.avg_pool2d(grad, 2) * 4


def add_upsampled(high: Tensor, low: Tensor) -> Tensor:
    """`high + upsample_to(low, high.shape[-2:])`; one broadcast pass when the sizes are exactly 2x."""
    height, width = high.shape[-2:]
    if (height, width) != (2 * low.shape[-2], 2 * low.shape[-1]):
        return high + upsample_to(low, (height, width))
    return _AddUpsampled.apply(high, low)


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int, dilation: int, groups: int) -> Tensor:
    return F.conv2d(x, weight, bias, 1, padding, dilation, groups)


def _conv_concatenated(inputs: list[Tensor], weights: list[Tensor], bias: Tensor | None, padding: int, dilation: int) -> Tensor:
    """`sum_i conv(inputs[i], weights[i]) + bias` as one convolution over the concatenated channels."""
    if len(inputs) == 1:
        return _conv(inputs[0], weights[0], bias, padding, dilation, 1)
    return _conv(torch.cat(inputs, dim=1), torch.cat(weights, dim=1), bias, padding, dilation, 1)


def octave_conv2d(
    x_h: Tensor,
    x_l: Tensor | None,
    weights: OctaveWeights,
    bias_h: Tensor | None = None,
    bias_l: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    high_to_low_downsample: str = "avg_pool",
) -> tuple[Tensor, Tensor | None]:
    """Fused octave convolution (groups = 1): `(x_h (B, Ch_in, H, W), x_l (B, Cl_in, ceil(H/2), ceil(W/2)) or None)
    -> (y_h (B, Ch_out, H/s, W/s), y_l (B, Cl_out, ...) or None)`, equal to `octave_conv2d_reference`.

    Convolutions must keep the size (`2 * padding == dilation * (k - 1)`), `stride` is 1 or 2.
    """
    high_to_high, high_to_low, low_to_high, low_to_low = weights
    if x_l is None:
        low_to_high = low_to_low = None
    if stride == 2:
        x_h = downsample(x_h)
        # x_l already has the high output's resolution: low->high needs no upsampling.
        y_h = _conv_concatenated([x_h, x_l] if low_to_high is not None else [x_h],
                                 [high_to_high, low_to_high] if low_to_high is not None else [high_to_high],
                                 bias_h, padding, dilation)  # fmt: skip
        x_l = downsample(x_l) if low_to_low is not None else None
    else:
        y_h = _conv(x_h, high_to_high, bias_h, padding, dilation, 1)
        if low_to_high is not None:
            y_h = add_upsampled(y_h, _conv(x_l, low_to_high, None, padding, dilation, 1))
    strided = high_to_low is not None and high_to_low_downsample == "strided_conv"
    low_in = [downsample(x_h)] if high_to_low is not None and not strided else []
    low_w = [high_to_low] if high_to_low is not None and not strided else []
    if low_to_low is not None:
        low_in.append(x_l)
        low_w.append(low_to_low)
    y_l = _conv_concatenated(low_in, low_w, bias_l, padding, dilation) if low_in else None
    if strided:  # a different input grid: its own convolution
        from_high = F.conv2d(x_h, high_to_low, None if low_in else bias_l, 2, padding, dilation)
        y_l = from_high if y_l is None else y_l + from_high
    return y_h, y_l
