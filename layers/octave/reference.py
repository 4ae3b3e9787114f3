"""Octave convolution, the four paths written out one convolution each (arXiv:1904.05049, Eq. 2-3).

`Y_H = f(X_H; W_HH) + upsample(f(X_L; W_LH))`, `Y_L = f(X_L; W_LL) + f(pool(X_H); W_HL)`
(or `f(X_H; W_HL)` at stride 2 in place of the pooled term: Table 3's strided alternative).
Slow and obviously correct: the tests trust it, `functional.octave_conv2d` is tested against
it, and grouped and depthwise layers run it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from layers.octave.functional import OctaveWeights, downsample, upsample_to


def _path(x: Tensor, weight: Tensor, padding: int, dilation: int, stride: int = 1) -> Tensor:
    """One path's convolution; its group count follows from the shapes (depthwise paths have one input channel per group)."""
    return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1] // weight.shape[1])


def _add(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    if first is None:
        return second
    return first if second is None else first + second


def octave_conv2d_reference(
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
    """`(x_h (B, Ch_in, H, W), x_l (B, Cl_in, ceil(H/2), ceil(W/2)) or None) -> (y_h, y_l or None)`.

    Stride 2 pools the high input first; low->high then reads `x_l`, already at the output's
    high resolution. Each path's groups are `in_channels / weight.shape[1]`. High->low
    average-pools `x_h` (`high_to_low_downsample="avg_pool"`) or convolves it at stride 2
    (`"strided_conv"`).
    """
    high_to_high, high_to_low, low_to_high, low_to_low = weights
    if stride == 2:
        x_h = downsample(x_h)
    y_h = _path(x_h, high_to_high, padding, dilation)
    y_l = None
    if high_to_low is not None and high_to_low_downsample == "strided_conv":
        y_l = _path(x_h, high_to_low, padding, dilation, stride=2)
    elif high_to_low is not None:
        y_l = _path(downsample(x_h), high_to_low, padding, dilation)
    if x_l is not None and low_to_low is not None:
        y_l = _add(y_l, _path(downsample(x_l, stride), low_to_low, padding, dilation))
    if x_l is not None and low_to_high is not None:
        from_low = _path(x_l, low_to_high, padding, dilation)
        y_h = y_h + (from_low if stride == 2 else upsample_to(from_low, y_h.shape[-2:]))
    if bias_h is not None:
        y_h = y_h + bias_h[:, None, None]
    if bias_l is not None and y_l is not None:
        y_l = y_l + bias_l[:, None, None]
    return y_h, y_l
