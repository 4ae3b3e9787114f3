"""DCLS kernel construction, pure PyTorch: the slow, obviously correct math the tests trust.

Dilated Convolution with Learnable Spacings (Khalfaoui-Hassani, Pellegrini, Masquelier,
ICLR 2023, arXiv 2112.03740) and its Gaussian follow-up (arXiv 2306.00817): each of the K
weights of a filter sits at a learned fractional position of a larger "dilated" kernel and
is spread over the integer grid around it. This module materialises every element's
contribution to every grid point, like the `dcls` 0.1.1 package, and sums them.

Conventions (one for every version and rank):

- `P[a]` is the position along spatial axis `ndim - 1 - a`, i.e. `P[0]` is x (the last,
  width axis), `P[1]` is y, `P[2]` is z: the order `dcls` 0.1.1 uses for `v1`, `max` and
  `gauss`. Position 0 is the kernel centre: grid index `d // 2` of that axis, and positions
  are clamped to `[-(d // 2), d - 1 - d // 2]` (the whole kernel, also for non-square and
  even sizes).
- Versions: `v0` bilinear; `v1` bilinear normalised to the weight; `max` a triangle of
  half-width `|SIG| + 1`, normalised; `gauss` a Gaussian of per-axis deviation
  `|SIG| + 0.27`, normalised. Normalisation divides each element's spread by its sum over
  the kernel plus 1e-7, as `dcls` 0.1.1 does.
- Gradients at kinks are one-sided so that no position loses its gradient: the derivative
  in a position is the right derivative (moving up), except on the upper clamp limit, where
  only moving down is possible and the left derivative is taken; `|SIG|` has slope +1 at 0.
  `dcls` 0.1.1 gives 0 in all three cases (integer positions, positions on the limit, and
  `max`'s initial `SIG = 0`, which therefore never trains there).
"""

from __future__ import annotations

import torch
from torch import Tensor

VERSIONS = ("v0", "v1", "max", "gauss")
NORMALISED = ("v1", "max", "gauss")
HAS_SIGMA = ("max", "gauss")
EPSILON = 1e-7  # added to the normaliser, as in dcls 0.1.1
GAUSS_SIGMA_OFFSET = 0.27
MAX_WIDTH_OFFSET = 1.0


def position_limits(size: int) -> tuple[int, int]:
    """The clamp range `(low, high)` of a centred position on an axis of `size` taps."""
    return -(size // 2), size - 1 - size // 2


def axis_sizes(dilated_kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    """Dilated size along the axis each row `P[a]` moves on (`P[0]` is the last axis)."""
    return tuple(reversed(dilated_kernel_size))


def _abs_right(value: Tensor) -> Tensor:
    """`|value|` whose derivative at 0 is +1 (torch's is 0)."""
    return torch.where(value >= 0, value, -value)


def triangle(offset: Tensor, half_width: Tensor | float) -> Tensor:
    """`relu(half_width - |offset|)` with its derivative in `offset` taken from the left at
    every kink: +1 on `(-w, 0]`, -1 on `(0, w]`, 0 elsewhere (so the derivative in a position
    `p`, where `offset = index - p`, is the right one)."""
    rising = (offset > -half_width) & (offset <= 0)
    falling = (offset > 0) & (offset <= half_width)
    zero = torch.zeros_like(offset)
    return torch.where(rising, half_width + offset, torch.where(falling, half_width - offset, zero))


def gaussian(offset: Tensor, sigma: Tensor) -> Tensor:
    """`exp(-offset^2 / (2 sigma^2))`."""
    return torch.exp(-0.5 * (offset / sigma) ** 2)


def axis_profile(position: Tensor, sigma: Tensor | None, size: int, version: str) -> Tensor:
    """One axis' spread of every element over the `size` taps of that axis.

    Args:
        position: `(...,)` centred positions (clamped or not).
        sigma: `(...,)` raw `SIG` values (`max`, `gauss`) or None.
    Returns:
        `(..., size)` unnormalised weights of each tap.
    """
    low, high = position_limits(size)
    index = torch.arange(size, device=position.device, dtype=position.dtype) - (size // 2)
    on_limit = (position >= high).unsqueeze(-1)
    offset = index - position.unsqueeze(-1)
    # On the upper limit the profile is evaluated mirrored (it is symmetric), which turns
    # the left derivative of `triangle` into a right one: the position's derivative is then
    # the one pointing into the kernel.
    offset = torch.where(on_limit, -offset, offset)
    if version == "gauss":
        return gaussian(offset, (_abs_right(sigma) + GAUSS_SIGMA_OFFSET).unsqueeze(-1))
    if version == "max":
        return triangle(offset, (_abs_right(sigma) + MAX_WIDTH_OFFSET).unsqueeze(-1))
    return triangle(offset, 1.0)


def construct_kernel(
    weight: Tensor, P: Tensor, SIG: Tensor | None, dilated_kernel_size: tuple[int, ...], version: str
) -> Tensor:
    """The dense dilated kernel of a DCLS convolution.

    Args:
        weight: `(C_out, C_in/g, K)`.
        P: `(ndim, C_out, C_in/g, K)` centred positions, `P[0]` along the last axis.
        SIG: `(ndim, C_out, C_in/g, K)` for `max`/`gauss`, else None.
        dilated_kernel_size: `(d_1, ..., d_ndim)` in the input's axis order.
        version: `v0`, `v1`, `max` or `gauss`.
    Returns:
        `(C_out, C_in/g, d_1, ..., d_ndim)`.
    """
    ndim = len(dilated_kernel_size)
    sizes = axis_sizes(dilated_kernel_size)
    spread = None  # (C_out, C_in/g, K, d_1, ..., d_ndim), built axis by axis
    for a in range(ndim):
        profile = axis_profile(P[a], None if SIG is None else SIG[a], sizes[a], version)
        # axis a of P moves along spatial axis ndim-1-a
        shape = list(weight.shape) + [1] * ndim
        shape[3 + ndim - 1 - a] = sizes[a]
        profile = profile.reshape(shape)
        spread = profile if spread is None else spread * profile
    grid_dims = tuple(range(3, 3 + ndim))
    if version in NORMALISED:
        spread = spread / (spread.sum(grid_dims, keepdim=True) + EPSILON)
    return (spread * weight.reshape(*weight.shape, *([1] * ndim))).sum(2)
