"""FlexConv: continuous kernel convolution with a learned kernel size (Romero, Bruintjes,
Tomczak, Bekkers, Hoogendoorn, van Gemert, ICLR 2022, arXiv:2110.08059).

The continuous kernel is multiplied by a Gaussian mask per dimension whose mean and width
are learned; the kernel is computed (and convolved) only where the mask exceeds a
threshold, so a layer that learns a small kernel also costs less.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from layers.flexconv.ckconv import CKConv
from layers.flexconv.grid import Horizon, samples_per_unit
from layers.flexconv.mask import CROP_RULES, MIN_SIGMA, crop_window, gaussian, threshold_radius, window_bounds
from layers.flexconv.regularizer import MASK_BUDGET_SHARE, TARGETS, mask_frequency, mask_sigma_within

# The kernel network starts a bit wider than the mask, so the masked kernel is not cut off
# inside the mask (the reference's factor).
KERNEL_EXTENT_PER_SIGMA = 1.667


class FlexConv(CKConv):
    """FlexConv of rank `dim`: `(B, C_in, *S) -> (B, C_out, *ceil(S / stride))`.

    Mask parameters: `mask_mean` `(dim,)`, starting at the newest time step (+1) in 1-D and at
    the centre (0) in 2-D, and `mask_sigma` `(dim,)`, starting at `mask_init_sigma`; both in
    units of relative position (the grid spans `[-1, 1]`). They get their own learning-rate
    factor and no weight decay (`parameter_options`).

    Args:
        in_channels, out_channels, dim, horizon, **options: as for `CKConv`.
        mask_init_sigma: initial mask width (0.075 in the paper).
        mask_threshold: crop where the mask falls below this value, in (0, 1).
        mask_dynamic_cropping: crop (compute shrinks); False evaluates the full grid.
        mask_crop: which samples the crop keeps (`layers.flexconv.mask.CROP_RULES`): `cover` (also
            the first one beyond the threshold radius) or `inside` (the reference's).
        mask_lr_factor: learning-rate factor of the mask parameters.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        horizon: Horizon = "same",
        *,
        mask_init_sigma: float = 0.075,
        mask_threshold: float = 0.1,
        mask_dynamic_cropping: bool = True,
        mask_crop: str = "cover",
        mask_lr_factor: float = 0.1,
        **options,
    ) -> None:
        name = type(self).__name__
        if mask_crop not in CROP_RULES:
            raise ValueError(f"{name}: mask crop={mask_crop!r} must be one of {', '.join(CROP_RULES)}")
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"{name}: mask threshold={mask_threshold} must be in (0, 1)")
        if mask_init_sigma <= 0 or mask_lr_factor <= 0:
            raise ValueError(f"{name}: mask init sigma={mask_init_sigma} and lr_factor={mask_lr_factor} must be > 0")
        self.init_extent = min(KERNEL_EXTENT_PER_SIGMA * mask_init_sigma, 1.0)
        super().__init__(in_channels, out_channels, dim, horizon, **options)
        self.mask_mean = nn.Parameter(torch.full((dim,), 1.0 if self.causal else 0.0))
        self.mask_sigma = nn.Parameter(torch.full((dim,), float(mask_init_sigma)))
        self.mask_threshold = float(mask_threshold)
        self.mask_dynamic_cropping = mask_dynamic_cropping
        self.mask_crop = mask_crop
        self.mask_lr_factor = float(mask_lr_factor)

    def regularize_targets(self) -> tuple[str, ...]:
        return TARGETS

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_threshold={self.mask_threshold}, cropping={self.mask_dynamic_cropping}, crop={self.mask_crop}"

    def crop_windows(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        """`(start, stop)` of the grid samples kept per dimension (see `layers.flexconv.mask.crop_window`).

        The crop is quantised on the grid the kernel was trained on, `resolution_ratio` times
        coarser (1 until `resample_kernels` moves the layer to a finer grid), so a kernel
        re-sampled for a finer input keeps the same continuous support instead of gaining
        samples beyond the outermost one it was trained with."""
        if not self.mask_dynamic_cropping:
            return [(0, size) for size in sizes]
        means, sigmas = self.mask_mean.tolist(), self.mask_sigma.tolist()
        ratio = self.resolution_ratio()
        return [crop_window(size, mean, sigma, self.mask_threshold, self.causal, ratio, self.mask_crop) for size, mean, sigma in zip(sizes, means, sigmas)]

    def kernel_axes(self, sizes: Sequence[int], reference: Tensor) -> list[Tensor]:
        full = super().kernel_axes(sizes, reference)
        if torch.compiler.is_compiling():  # a crop size read from parameters cannot be traced: `envelope` zeroes instead
            return full
        return [axis[start:stop] for axis, (start, stop) in zip(full, self.crop_windows(sizes))]

    def envelope(self, axes: Sequence[Tensor]) -> Tensor:
        """The mask on the (cropped) grid, `(*K)`: the product of one Gaussian per dimension.

        Under `torch.compile` the grid is not cropped; the mask is zeroed outside the crop
        window instead, which gives the same convolution (without the saving)."""
        dtype = axes[0].dtype
        means, sigmas = self.mask_mean.to(dtype), self.mask_sigma.to(dtype)
        masks = [gaussian(axis, mean, sigma) for axis, mean, sigma in zip(axes, means, sigmas)]
        if self.mask_dynamic_cropping and torch.compiler.is_compiling():
            masks = [mask * self._inside_window(axis, mean, sigma) for mask, axis, mean, sigma in zip(masks, axes, means, sigmas)]
        if len(masks) == 1:
            return masks[0]
        return masks[0].unsqueeze(1) * masks[1].unsqueeze(0)

    def _inside_window(self, axis: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
        """1 on the samples `crop_window` keeps, 0 elsewhere (`window_bounds`: no value leaves the graph)."""
        dtype = axis.dtype
        radius = sigma.detach().abs().clamp_min(MIN_SIGMA) * math.sqrt(-2.0 * math.log(self.mask_threshold))
        ratio = self.sampling_rate_norm.to(dtype) ** (-1.0 / self.dim)
        start, stop = window_bounds(len(axis), mean.detach().to(dtype), radius.to(dtype), self.causal, ratio, self.mask_crop)
        index = torch.arange(len(axis), device=axis.device, dtype=dtype)
        return ((index >= start) & (index < stop)).to(dtype)

    def extra_frequency(self) -> Tensor | None:
        if self.regularize_target != "gabor+mask":
            return None
        return mask_frequency(self.mask_sigma, self.regularize_gauss_stddevs)

    def limit_extra_bandwidth(self, budget: float) -> float:
        """With `gabor+mask`: widen the mask (never narrow it) until its bandwidth is at most
        `MASK_BUDGET_SHARE` of `budget` (at sigma 0.075 it alone exceeds the Nyquist frequency of
        grids up to 17 samples); returns the mask's bandwidth."""
        if self.regularize_target != "gabor+mask":
            return 0.0
        narrowest = mask_sigma_within(MASK_BUDGET_SHARE * budget, self.regularize_gauss_stddevs)
        self.mask_sigma.copy_(self.mask_sigma.abs().clamp_min(narrowest))
        return float(mask_frequency(self.mask_sigma, self.regularize_gauss_stddevs))

    def parameter_options(self) -> dict[str, dict[str, float]]:
        """`layers.factory.ParameterOptions`: the mask's learning-rate factor, no weight decay."""
        options = {"lr_factor": self.mask_lr_factor, "weight_decay": 0.0}
        return {"mask_mean": options, "mask_sigma": options}

    def learned_extent(self) -> dict[str, Tensor]:
        """`layers.factory.LearnedExtent`: the size of the region the mask keeps (above its
        threshold, as cropped), per dimension in input samples at the last grid size; empty
        before the grid size is known (`horizon='same'`/`'full'` before the first forward)."""
        if self.grid_size is None:
            return {}
        names = ("length",) if self.dim == 1 else ("height", "width")
        extents = {}
        for name, size, mean, sigma in zip(names, self.grid_size, self.mask_mean.tolist(), self.mask_sigma.tolist()):
            radius = threshold_radius(sigma, self.mask_threshold)
            span = 1.0 - (mean - radius) if self.causal else 2 * (abs(mean) + radius)  # in units of position
            extent = min(span * samples_per_unit(size) + 1.0, float(size))
            extents[name] = torch.tensor([max(extent, 1.0)])
        return extents


class FlexConv1d(FlexConv):
    """Causal 1-D FlexConv, `(B, C_in, L) -> (B, C_out, ceil(L / stride))`. Arguments as for `FlexConv` (without `dim`)."""

    def __init__(self, in_channels: int, out_channels: int, horizon: Horizon = "same", **options) -> None:
        super().__init__(in_channels, out_channels, 1, horizon, **options)


class FlexConv2d(FlexConv):
    """2-D FlexConv with `same` padding, `(B, C_in, H, W) -> (B, C_out, H', W')`. Arguments as for `FlexConv` (without `dim`)."""

    def __init__(self, in_channels: int, out_channels: int, horizon: Horizon = "same", **options) -> None:
        super().__init__(in_channels, out_channels, 2, horizon, **options)
