"""Anti-aliasing regularisation of Gabor kernel networks (Romero et al., arXiv:2110.08059, Sec. 3.3).

A multiplicative filter network of Gabor filters is a sum of Gabor functions whose
frequencies are sums of the filters' frequencies, so its bandwidth is bounded by
`sum_l f_l`, each filter's `f_l` being the largest sine frequency plus `gauss_stddevs`
standard deviations of its envelope's spectrum. Sampled on `N` points over `[-1, 1]` the
kernel aliases above the Nyquist frequency `(N - 1) / 4` (cycles per unit). Every filter
gets an equal share of the Nyquist frequency (the reference's `together` method), and the
excess is penalised, `factor * sum relu(f - f_Nyq / L)^2`, in one of two forms:

- `max` (the paper's): one term per filter, for its highest unit. Its gradient reaches one
  weight per filter per step, so a net that starts far above Nyquist needs many epochs.
- `hinge`: one term per unit and position dimension of every filter, so every unit above
  its share is pulled back at once. Zero exactly where `max` is zero.

With `target="gabor+mask"` the FlexConv mask, itself a Gaussian envelope of width `sigma`,
adds `gauss_stddevs / (2 pi sigma)` (largest over dimensions), spread equally over the filters.

`CKConv.band_limit` is the matching initialisation: the kernel network (and the mask) start
within the Nyquist frequency of the first grid they are trained on, so the penalty only
has to keep them there (`CKConv(regularize_init="nyquist")`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TARGETS = ("gabor", "gabor+mask")
FORMS = ("hinge", "max")
INITS = ("nyquist", "paper")

# With `gabor+mask`, the share of the Nyquist frequency a band-limited initialisation leaves
# to the mask (the kernel network gets the rest).
MASK_BUDGET_SHARE = 0.5


def nyquist_frequency(grid_size: int) -> float:
    """Nyquist frequency, in cycles per unit of position, of `grid_size` samples over `[-1, 1]`."""
    return (grid_size - 1) / 4


def mask_frequency(sigma: Tensor, gauss_stddevs: float) -> Tensor:
    """Bandwidth of the Gaussian mask(s) of widths `sigma` `(D,)`: the largest over dimensions."""
    return (gauss_stddevs / (2 * math.pi * sigma.abs().clamp_min(1e-4))).max()


def mask_sigma_within(budget: float, gauss_stddevs: float) -> float:
    """The narrowest mask width whose bandwidth (`mask_frequency`) is at most `budget`."""
    return gauss_stddevs / (2 * math.pi * budget)


def anti_aliasing_penalty(unit_frequencies: Tensor, grid_size: int, extra_frequency: Tensor | None = None, form: str = "hinge") -> Tensor:
    """The penalty for filters whose units have frequencies `unit_frequencies` `(L, H, D)`.

    `sum relu(f + extra / L - f_Nyq / L)^2` over filters (`max`: `f` is each filter's highest
    unit) or over every unit and dimension of every filter (`hinge`).
    """
    if form not in FORMS:
        raise ValueError(f"anti-aliasing penalty: form={form!r} must be one of {', '.join(FORMS)}")
    count = unit_frequencies.shape[0]
    frequencies = unit_frequencies.reshape(count, -1).amax(1) if form == "max" else unit_frequencies
    if extra_frequency is not None:
        frequencies = frequencies + extra_frequency / count
    excess = torch.relu(frequencies - nyquist_frequency(grid_size) / count)
    return excess.square().sum()
