"""The Gaussian mask of FlexConv and the crop it implies (Romero et al., arXiv:2110.08059, Sec. 3.1).

Per dimension the mask is `exp(-1/2 ((x - mean) / sigma)^2)`; it exceeds `threshold` on
`|x - mean| < sigma * sqrt(-2 ln threshold)`. Outside that region the masked kernel is
negligible, so it is not computed at all: the kernel is cropped, its size is learned with
the mask, and compute shrinks with it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from layers.flexconv.grid import samples_per_unit

MIN_SIGMA = 1e-4  # keeps a collapsing mask finite

# Which grid samples a crop keeps (`crop_window`): `cover` those within the mask's threshold radius
# and the first one beyond it, whose cell still overlaps the region the mask keeps; `inside` only
# those strictly within it (rjbruin/flexconv's crop: one sample fewer per side, less compute).
CROP_RULES = ("cover", "inside")


def gaussian(x: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
    """`exp(-1/2 ((x - mean) / sigma)^2)` elementwise; `sigma` is used by magnitude."""
    return torch.exp(-0.5 * ((x - mean) / sigma.abs().clamp_min(MIN_SIGMA)).square())


def threshold_radius(sigma: float, threshold: float) -> float:
    """Half-width of the region where a Gaussian of width `sigma` exceeds `threshold`."""
    return max(abs(sigma), MIN_SIGMA) * math.sqrt(-2.0 * math.log(threshold))


def crop_window(size: int, mean: float, sigma: float, threshold: float, causal: bool, ratio: float = 1.0, rule: str = "cover") -> tuple[int, int]:
    """`(start, stop)` indices of the grid samples `linspace(-1, 1, size)` to keep.

    Causal (1-D): the kernel keeps its newest end (position +1, the current time step) and
    drops the oldest samples left of `mean - r`, so the causal alignment is unchanged.
    Otherwise: a window centred on 0 (so `same` padding stays centred, and the size stays
    odd) reaching `max(|mean - r|, |mean + r|)`. At least one sample is kept. `rule`
    (`CROP_RULES`): `cover` also keeps the first sample beyond that reach, `inside` does not.

    `ratio`: the grid is `ratio` times finer than the one the kernel was trained on. The
    window is then quantised on that coarser grid and mapped back, so it ends on the same
    position as it did there (the same continuous support at both resolutions).
    """
    mean_t, radius_t = (torch.tensor(value, dtype=torch.float64) for value in (mean, threshold_radius(sigma, threshold)))
    start, stop = window_bounds(size, mean_t, radius_t, causal, ratio, rule)
    return int(start), int(stop)


def window_bounds(size: int, mean: Tensor, radius: Tensor, causal: bool, ratio: Tensor | float, rule: str = "cover") -> tuple[Tensor, Tensor]:
    """`crop_window`'s rule in tensor operations: `(start, stop)` as 0-d tensors, for a mask
    `mean` and threshold `radius`, so a traced graph can zero outside the window it cannot crop."""
    if rule not in CROP_RULES:
        raise ValueError(f"crop rule={rule!r} must be one of {', '.join(CROP_RULES)}")
    inside = 1.0 if rule == "inside" else 0.0  # one sample fewer at the reach, on the coarse grid
    coarse = samples_per_unit(size) / ratio
    if causal:
        dropped = torch.floor((mean - radius + 1.0) * coarse + 1e-9) + inside  # oldest samples dropped, on the coarse grid
        return torch.round(dropped * ratio).clamp(0, size - 1), torch.full_like(mean, size)
    centre = (size - 1) // 2
    reach = (torch.ceil((mean.abs() + radius) * coarse - 1e-9) - inside).clamp_min(0)
    half = torch.round(reach * ratio).clamp_max(centre)
    return centre - half, centre + half + 1
