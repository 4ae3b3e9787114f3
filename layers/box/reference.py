"""Pure-PyTorch box convolution: forward and analytic backward (the path tests trust).

Notation. Input `x` is `(B, C, H, W)`; each box parameter is `(C, F)` in pixels: box
`(c, f)` at output pixel `(i, j)` covers the continuous rows `[i*s + x_min, i*s + x_max + 1)`
and columns `[j*s + y_min, j*s + y_max + 1)` (`s` the stride), pixels outside the image
are zero, and each pixel counts with the area the box overlaps of it.

Let `S` be the zero-padded integral image, `S[k, l] = sum(x[:k, :l])`, and `P` its
bilinear interpolation, clamped to `[0, H] x [0, W]`. `P(r, c)` is then exactly the
integral of `x` over `[0, r) x [0, c)`, so with `lo = min`, `hi = max + 1`:

    box_sum(i, j) = P(i*s + hi_x, j*s + hi_y) - P(i*s + lo_x, j*s + hi_y)
                  - P(i*s + hi_x, j*s + lo_y) + P(i*s + lo_x, j*s + lo_y)

which is separable: interpolate `S` along the columns at both column ends, take the
difference, then interpolate that along the rows. `exact=False` evaluates the same
formula at the box rounded inward (`ceil(min)`, `floor(max)`), the cheap inference path,
and passes gradients straight through the rounding (as the paper's reference code does).

Gradients. Input: the box filter of the (normalised) output gradient with the mirrored
box `[-x_max, -x_min]` (as `w(d) -> w(-d)`). Coordinates: `d box_sum / d x_max` is the slope of `P`
along the rows at the bottom edge, i.e. the fractionally weighted row just below the box;
at integer coordinates, where the output is not differentiable, the one-sided derivative
that grows the box is taken. `normalize=True` divides by the full box area
`(x_max - x_min + 1)(y_max - y_min + 1)`, even where the image border clips the box.
"""

from __future__ import annotations

import torch
from torch import Tensor

Coordinates = tuple[Tensor, Tensor, Tensor, Tensor]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Integral images accumulate in float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def output_size(size: int, stride: int) -> int:
    return -(-size // stride)


def integral_image(x: Tensor) -> Tensor:
    """`(B, C, H, W) -> (B, C, H+1, W+1)`: `S[..., k, l] = x[..., :k, :l].sum()`."""
    summed = x.to(accumulation_dtype(x.dtype)).cumsum(-1).cumsum(-2)
    return torch.nn.functional.pad(summed, (1, 0, 1, 0))


def effective_coordinates(x_min: Tensor, x_max: Tensor, y_min: Tensor, y_max: Tensor, exact: bool) -> Coordinates:
    """The box actually evaluated: as given (`exact`) or rounded inward."""
    if exact:
        return x_min, x_max, y_min, y_max
    return x_min.ceil(), x_max.floor(), y_min.ceil(), y_max.floor()


def box_area(x_min: Tensor, x_max: Tensor, y_min: Tensor, y_max: Tensor) -> Tensor:
    """`(C, F)` full areas of the boxes (border clipping ignored)."""
    return (x_max - x_min + 1) * (y_max - y_min + 1)


def add_area_gradients(grad_box: list[Tensor], grad_dot_output: Tensor, box: Coordinates) -> list[Tensor]:
    """Box gradients of a normalised output: add the derivative of the `1 / area` factor.

    `grad_dot_output` `(C, F)` is the sum over `(b, i, j)` of `grad_output * output`; since
    `area = (x_max - x_min + 1)(y_max - y_min + 1)`, `d output / d x_max` gains
    `-output / (x_max - x_min + 1)` and `d output / d x_min` the opposite (y alike).
    """
    x_min, x_max, y_min, y_max = box
    height, width = x_max - x_min + 1, y_max - y_min + 1
    return [
        grad_box[0] + grad_dot_output / height,
        grad_box[1] - grad_dot_output / height,
        grad_box[2] + grad_dot_output / width,
        grad_box[3] - grad_dot_output / width,
    ]


def _resized(shape: torch.Size | list[int], dim: int, size: int) -> list[int]:
    shape = list(shape)
    shape[dim] = size
    return shape


def _gather(source: Tensor, dim: int, index: Tensor) -> Tensor:
    """`torch.gather` where `source` and `index` broadcast on every dimension but `dim`."""
    dim %= source.ndim
    common = torch.broadcast_shapes(_resized(source.shape, dim, 1), _resized(index.shape, dim, 1))
    return torch.gather(
        source.expand(_resized(common, dim, source.shape[dim])), dim, index.expand(_resized(common, dim, index.shape[dim]))
    )


def interpolate(prefix: Tensor, positions: Tensor, dim: int) -> Tensor:
    """Linear interpolation of `prefix` along `dim` at fractional `positions`.

    `prefix` has `n + 1` entries along `dim`; positions are clamped to `[0, n]` (the
    prefix of a zero-padded signal is constant outside). `positions` broadcasts against
    `prefix` on every other dimension.
    """
    n = prefix.shape[dim] - 1
    clamped = positions.clamp(0, n)
    cell = clamped.floor().clamp(max=n - 1)
    fraction = (clamped - cell).to(prefix.dtype)
    cell = cell.long()
    low = _gather(prefix, dim, cell)
    high = _gather(prefix, dim, cell + 1)
    return low + fraction * (high - low)


def slope(prefix: Tensor, positions: Tensor, dim: int, upper_edge: bool) -> Tensor:
    """Derivative of `interpolate(prefix, t, dim)` with respect to `t`.

    At integer `t` the one-sided derivative that grows a box is used: the right one for
    an upper edge (`t = hi`), the left one for a lower edge (`t = lo`). Zero outside `[0, n]`.
    """
    n = prefix.shape[dim] - 1
    cell = positions.floor() if upper_edge else positions.ceil() - 1
    inside = (cell >= 0) & (cell <= n - 1)
    cell = cell.clamp(0, n - 1).long()
    difference = _gather(prefix, dim, cell + 1) - _gather(prefix, dim, cell)
    return difference * inside.to(prefix.dtype)


def _edge_positions(size_out: int, stride: int, offset: Tensor) -> Tensor:
    """`(C, F, size_out)` positions `i * stride + offset[c, f]` of one box edge."""
    steps = torch.arange(size_out, device=offset.device, dtype=offset.dtype) * stride
    return offset.unsqueeze(-1) + steps


def _row_positions(size_out: int, stride: int, offset: Tensor) -> Tensor:
    """`(1, C, F, H_out, 1)`: positions of a horizontal box edge, to index rows."""
    return _edge_positions(size_out, stride, offset)[None, :, :, :, None]


def _column_positions(size_out: int, stride: int, offset: Tensor) -> Tensor:
    """`(1, C, F, 1, W_out)`: positions of a vertical box edge, to index columns."""
    return _edge_positions(size_out, stride, offset)[None, :, :, None, :]


def _column_pass(integral: Tensor, y_lo: Tensor, y_hi: Tensor, out_w: int, stride: int) -> Tensor:
    """`(B, C, H+1, W+1) -> (B, C, F, H+1, W_out)`: column-box sums of every prefix row."""
    prefix = integral.unsqueeze(2)  # (B, C, 1, H+1, W+1)
    hi = _column_positions(out_w, stride, y_hi)
    lo = _column_positions(out_w, stride, y_lo)
    return interpolate(prefix, hi, -1) - interpolate(prefix, lo, -1)


def _row_pass(integral: Tensor, x_lo: Tensor, x_hi: Tensor, out_h: int, stride: int) -> Tensor:
    """`(B, C, H+1, W+1) -> (B, C, F, H_out, W+1)`: row-box sums of every prefix column."""
    prefix = integral.unsqueeze(2)
    hi = _row_positions(out_h, stride, x_hi)
    lo = _row_positions(out_h, stride, x_lo)
    return interpolate(prefix, hi, -2) - interpolate(prefix, lo, -2)


def box_sums(integral: Tensor, box: Coordinates, out_hw: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """`(B, C, H+1, W+1) -> (B, C, F, H_out, W_out)` box sums (not normalised)."""
    x_min, x_max, y_min, y_max = box
    columns = _column_pass(integral, y_min, y_max + 1, out_hw[1], stride[1])  # (B, C, F, H+1, W_out)
    rows_hi = _row_positions(out_hw[0], stride[0], x_max + 1)
    rows_lo = _row_positions(out_hw[0], stride[0], x_min)
    return interpolate(columns, rows_hi, -2) - interpolate(columns, rows_lo, -2)


def forward(
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    stride: tuple[int, int],
    normalize: bool,
    exact: bool,
) -> Tensor:
    """`(B, C, H, W) -> (B, C*F, ceil(H/s_h), ceil(W/s_w))`, output channel `c*F + f`."""
    batch, channels, height, width = input.shape
    box = effective_coordinates(x_min, x_max, y_min, y_max, exact)
    out_hw = (output_size(height, stride[0]), output_size(width, stride[1]))
    sums = box_sums(integral_image(input), tuple(c.to(accumulation_dtype(input.dtype)) for c in box), out_hw, stride)
    if normalize:
        sums = sums / box_area(*box).to(sums.dtype)[None, :, :, None, None]
    return sums.reshape(batch, -1, *out_hw).to(input.dtype)


def backward(
    grad_output: Tensor,
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    stride: tuple[int, int],
    normalize: bool,
    exact: bool,
    needs_input_grad: bool,
    needs_box_grad: bool,
) -> tuple[Tensor | None, Coordinates | None]:
    """Gradients of `forward` for `grad_output` `(B, C*F, H_out, W_out)`.

    Returns `(grad_input or None, (grad_x_min, grad_x_max, grad_y_min, grad_y_max) or None)`.
    """
    batch, channels, height, width = input.shape
    filters = x_min.shape[1]
    dtype = accumulation_dtype(input.dtype)
    box = tuple(c.to(dtype) for c in effective_coordinates(x_min, x_max, y_min, y_max, exact))
    b_x_min, b_x_max, b_y_min, b_y_max = box
    out_h, out_w = grad_output.shape[-2:]
    grad = grad_output.to(dtype).reshape(batch, channels, filters, out_h, out_w)
    area = box_area(*box)
    if normalize:
        grad = grad / area[None, :, :, None, None]

    grad_input = None
    if needs_input_grad:
        spread = grad
        if stride != (1, 1):  # the adjoint of strided sampling: scatter back to the full grid
            spread = grad.new_zeros(batch, channels, filters, height, width)
            spread[..., :: stride[0], :: stride[1]] = grad
        mirrored = (-b_x_max, -b_x_min, -b_y_max, -b_y_min)
        per_filter = box_sums(  # every (c, f) plane filtered by its own mirrored box
            integral_image(spread).reshape(batch, channels * filters, height + 1, width + 1),
            tuple(c.reshape(channels * filters, 1) for c in mirrored),
            (height, width),
            (1, 1),
        )
        grad_input = per_filter.reshape(batch, channels, filters, height, width).sum(2).to(input.dtype)

    grad_box = None
    if needs_box_grad:
        integral = integral_image(input)
        columns = _column_pass(integral, b_y_min, b_y_max + 1, out_w, stride[1])  # (B, C, F, H+1, W_out)
        rows = _row_pass(integral, b_x_min, b_x_max + 1, out_h, stride[0])  # (B, C, F, H_out, W+1)
        bottom = _row_positions(out_h, stride[0], b_x_max + 1)
        top = _row_positions(out_h, stride[0], b_x_min)
        right = _column_positions(out_w, stride[1], b_y_max + 1)
        left = _column_positions(out_w, stride[1], b_y_min)

        def reduce(derivative: Tensor) -> Tensor:
            return (grad * derivative).sum(dim=(0, 3, 4))

        grad_box = [
            -reduce(slope(columns, top, -2, upper_edge=False)),
            reduce(slope(columns, bottom, -2, upper_edge=True)),
            -reduce(slope(rows, left, -1, upper_edge=False)),
            reduce(slope(rows, right, -1, upper_edge=True)),
        ]
        if normalize:  # grad holds grad_output / area, and the output is box_sums / area
            sums = interpolate(columns, bottom, -2) - interpolate(columns, top, -2)
            grad_box = add_area_gradients(grad_box, (grad * sums).sum(dim=(0, 3, 4)), box)
        grad_box = tuple(g.to(x_min.dtype) for g in grad_box)
    return grad_input, grad_box
