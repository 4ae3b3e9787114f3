"""The dense equivalent of a box convolution: an explicit kernel and a grouped `conv2d`.

This is the brute-force ground truth the tests compare the box paths against, and the
baseline of the benchmark: it costs `O(kernel area)` per output pixel where the box path
costs `O(1)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from layers.box.reference import box_area, effective_coordinates


def _overlaps(low: Tensor, high: Tensor, radius: int) -> Tensor:
    """`(C, F, 2r+1)`: length of `[low, high)` inside each pixel `[d, d+1)`, `d = -r..r`."""
    d = torch.arange(-radius, radius + 1, dtype=low.dtype, device=low.device)
    return (torch.minimum(d + 1, high.unsqueeze(-1)) - torch.maximum(d, low.unsqueeze(-1))).clamp(min=0)


def kernel_radius(x_min: Tensor, x_max: Tensor, y_min: Tensor, y_max: Tensor) -> tuple[int, int]:
    """The smallest `(r_h, r_w)` such that every box fits in a `(2r+1)`-sized kernel."""
    rows = torch.cat([x_min.floor(), x_max.ceil()]).abs().max().detach()
    columns = torch.cat([y_min.floor(), y_max.ceil()]).abs().max().detach()
    return math.ceil(float(rows)), math.ceil(float(columns))


def box_kernel(
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    normalize: bool = True,
    exact: bool = True,
    radius: tuple[int, int] | None = None,
) -> Tensor:
    """`(C*F, 1, 2r_h+1, 2r_w+1)` kernel; tap `(r_h + d, r_w + e)` weighs pixel `(i+d, j+e)`."""
    box = effective_coordinates(x_min, x_max, y_min, y_max, exact)
    radius_h, radius_w = radius if radius is not None else kernel_radius(*box)
    b_x_min, b_x_max, b_y_min, b_y_max = box
    rows = _overlaps(b_x_min, b_x_max + 1, radius_h)
    columns = _overlaps(b_y_min, b_y_max + 1, radius_w)
    kernel = rows.unsqueeze(-1) * columns.unsqueeze(-2)  # (C, F, 2r_h+1, 2r_w+1)
    if normalize:
        kernel = kernel / box_area(*box)[..., None, None]
    return kernel.flatten(0, 1).unsqueeze(1)


def box_conv2d_dense(
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    stride: int | tuple[int, int] = 1,
    normalize: bool = True,
    exact: bool = True,
) -> Tensor:
    """Box convolution as a depthwise `conv2d`: `(B, C, H, W) -> (B, C*F, H_out, W_out)`."""
    kernel = box_kernel(x_min, x_max, y_min, y_max, normalize, exact).to(input.dtype)
    radius = (kernel.shape[-2] // 2, kernel.shape[-1] // 2)
    return F.conv2d(input, kernel, stride=stride, padding=radius, groups=input.shape[1])
