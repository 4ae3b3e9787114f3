"""Anti-aliasing regularisation of Gabor kernel networks (Romero et al., arXiv:2110.08059, Sec. 3.3).

A multiplicative filter network of Gabor filters is a sum of Gabor functions whose
frequencies are sums of the filters' frequencies, so its bandwidth is bounded by
`sum_l f_l`, each filter's `f_l` being the largest sine frequency plus `gauss_stddevs`
standard deviations of its envelope's spectrum. Sampled on `N` points over `[-1, 1]` the
kernel aliases above the Nyquist frequency `(N - 1) / 4` (cycles per unit). The
regulariser (the reference's `together` method) gives every filter an equal share of the
Nyquist frequency and penalises the excess: `factor * sum_l relu(f_l - f_Nyq / L)^2`.
With `target="gabor+mask"` the FlexConv mask, itself a Gaussian envelope of width `sigma`,
adds `gauss_stddevs / (2 pi sigma)` (largest over dimensions), spread equally over the filters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TARGETS = ("gabor", "gabor+mask")


def nyquist_frequency(grid_size: int) -> float:
    """Nyquist frequency, in cycles per unit of position, of `grid_size` samples over `[-1, 1]`."""
    return (grid_size - 1) / 4


def mask_frequency(sigma: Tensor, gauss_stddevs: float) -> Tensor:
    """Bandwidth of the Gaussian mask(s) of widths `sigma` `(D,)`: the largest over dimensions."""
    return (gauss_stddevs / (2 * math.pi * sigma.abs().clamp_min(1e-4))).max()


def anti_aliasing_penalty(filter_frequencies: Tensor, grid_size: int, extra_frequency: Tensor | None = None) -> Tensor:
    """`sum_l relu(f_l + extra / L - f_Nyq / L)^2` for the `L` filter frequencies `(L,)`."""
    count = filter_frequencies.numel()
    frequencies = filter_frequencies if extra_frequency is None else filter_frequencies + extra_frequency / count
    excess = torch.relu(frequencies - nyquist_frequency(grid_size) / count)
    return excess.square().sum()
