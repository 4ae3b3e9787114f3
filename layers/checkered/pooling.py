"""Checkered max, average and adaptive pooling on submap tensors `(N, C, S, H, W)`.

Sadigh & Sen, arXiv 1805.10766: pools subsample like `CheckeredConv2d` (stride 2 keeps
the sampler's offsets of every 2x2 window; `sampling.py`); adaptive pools pool every
submap on its own and keep the submaps.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from layers.checkered.checkered_conv import SubmapSampler, check_stride, symmetric_padding
from layers.checkered.functional import as_submaps, checkered_avg_pool2d, checkered_max_pool2d


class _CheckeredPool2d(nn.Module):
    def __init__(self, kernel_size, stride, padding, depth: int, sampler: str, seed: int) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size)
        self.stride = check_stride(self.kernel_size if stride is None else stride, name)
        self.padding = symmetric_padding(padding)
        if depth < 1:
            raise ValueError(f"{name}: depth={depth} must be >= 1")
        self.depth = depth
        self.sampler = SubmapSampler(sampler, seed)

    def _prepare(self, x: Tensor):
        x = as_submaps(x, type(self).__name__)
        sampling = self.sampler.sampling(x.shape[2] - self.depth + 1, self.training) if self.stride == 2 else None
        return x, sampling

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, depth={self.depth}, {self.sampler}"


class CheckeredMaxPool2d(_CheckeredPool2d):
    """Max pooling on submaps: `(N, C, S, H, W) -> (N, C, S', H', W')`; args as `nn.MaxPool2d` (stride 1 or 2)."""

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False, depth: int = 1, sampler: str = "naive", seed: int = 0
    ) -> None:
        super().__init__(kernel_size, stride, padding, depth, sampler, seed)
        self.dilation = _pair(dilation)
        self.ceil_mode = ceil_mode

    @classmethod
    def from_pool(cls, pool: nn.MaxPool2d, sampler: str = "naive", seed: int = 0) -> CheckeredMaxPool2d:
        if pool.return_indices:
            raise ValueError(f"{cls.__name__}: return_indices=True is not supported")
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, sampler=sampler, seed=seed)

    def forward(self, x: Tensor) -> Tensor:
        x, sampling = self._prepare(x)
        return checkered_max_pool2d(
            x, self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation, ceil_mode=self.ceil_mode,
            depth=self.depth, sampling=sampling,
        )


class CheckeredAvgPool2d(_CheckeredPool2d):
    """Average pooling on submaps: `(N, C, S, H, W) -> (N, C, S', H', W')`; args as `nn.AvgPool2d` (stride 1 or 2)."""

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        depth: int = 1,
        sampler: str = "naive",
        seed: int = 0,
    ) -> None:
        super().__init__(kernel_size, stride, padding, depth, sampler, seed)
        if self.stride == 2 and not count_include_pad and any(self.padding):
            raise ValueError(f"{type(self).__name__}: count_include_pad=False with stride 2 needs padding=0, got padding={padding}")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    @classmethod
    def from_pool(cls, pool: nn.AvgPool2d, sampler: str = "naive", seed: int = 0) -> CheckeredAvgPool2d:
        if pool.divisor_override is not None:
            raise ValueError(f"{cls.__name__}: divisor_override={pool.divisor_override} is not supported")
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, pool.count_include_pad, sampler=sampler, seed=seed)

    def forward(self, x: Tensor) -> Tensor:
        x, sampling = self._prepare(x)
        return checkered_avg_pool2d(
            x, self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad, depth=self.depth, sampling=sampling,
        )


class _CheckeredAdaptivePool2d(nn.Module):
    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = _pair(output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class CheckeredAdaptiveAvgPool2d(_CheckeredAdaptivePool2d):
    """`(N, C, S, H, W) -> (N, C, S, *output_size)`: `nn.AdaptiveAvgPool2d` on every submap."""

    def forward(self, x: Tensor) -> Tensor:
        x = as_submaps(x, type(self).__name__)
        return F.adaptive_avg_pool3d(x, (x.shape[2], *self.output_size))


class CheckeredAdaptiveMaxPool2d(_CheckeredAdaptivePool2d):
    """`(N, C, S, H, W) -> (N, C, S, *output_size)`: `nn.AdaptiveMaxPool2d` on every submap."""

    def forward(self, x: Tensor) -> Tensor:
        x = as_submaps(x, type(self).__name__)
        return F.adaptive_max_pool3d(x, (x.shape[2], *self.output_size))
