"""`CheckeredConv2d`: a 2-D convolution on submap tensors with checkered subsampling.

Sadigh & Sen, "Improving the Resolution of CNN Feature Maps Efficiently with
Multisampling", arXiv 1805.10766.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from layers.checkered.functional import Padding, as_submaps, checkered_conv2d
from layers.checkered.sampling import check_sampler, offset_groups


def check_stride(stride: int | tuple[int, int], where: str) -> int:
    """Checkered layers subsample by 1 or 2, the same along both axes."""
    pair = _pair(stride)
    if pair[0] != pair[1] or pair[0] not in (1, 2):
        raise ValueError(f"{where}: stride={stride} is not supported; checkered layers take stride 1 or 2 (the same on both axes)")
    return pair[0]


def symmetric_padding(padding: int | tuple[int, int]) -> Padding:
    """`p` or `(ph, pw)` -> `(left, right, top, bottom)`."""
    pad_h, pad_w = _pair(padding)
    if min(pad_h, pad_w) < 0:
        raise ValueError(f"checkered layer: padding={padding} must be non-negative")
    return (pad_w, pad_w, pad_h, pad_h)


class SubmapSampler:
    """The sampler of a stride-2 checkered layer: which offsets each submap is read at.

    `random` redraws the patterns at every training forward from a generator seeded with
    `seed`; in eval mode it uses one fixed draw of that seed per submap count, so a model
    evaluates the same way every time.
    """

    def __init__(self, sampler: str = "naive", seed: int = 0) -> None:
        check_sampler(sampler, type(self).__name__)
        self.sampler = sampler
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def sampling(self, submaps: int, training: bool) -> list[list[tuple[int, int]]]:
        if self.sampler == "random" and not training:
            return offset_groups("random", submaps, torch.Generator().manual_seed(self.seed))
        return offset_groups(self.sampler, submaps, self._generator)

    def __repr__(self) -> str:
        return f"sampler={self.sampler!r}, seed={self.seed}"


class CheckeredConv2d(nn.Module):
    """Convolution on submaps: `(N, C, S, H, W)` (or `(N, C, H, W)`, one submap) -> `(N, O, S', H', W')`.

    Stride 1 convolves every submap with the same weights (`S' = S - depth + 1`); stride 2
    halves `H` and `W` (rounding up) and multiplies the submaps by the sampler's groups (2
    for the checkered samplers). `depth > 1` mixes neighbouring submaps.

    Args are those of `nn.Conv2d` (stride 1 or 2, zero padding), plus
        depth: submaps per kernel (the kernel is `(O, C / groups, depth, kh, kw)`; for depth 1
            it is `(O, C / groups, kh, kw)`, exactly `nn.Conv2d`'s, so weights load either way).
        sampler: `naive | lattice | random | three_quarters | complete` (`sampling.py`).
        seed: seed of the `random` sampler.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        depth: int = 1,
        sampler: str = "naive",
        seed: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} must be divisible by groups={groups}")
        if depth < 1:
            raise ValueError(f"{name}: depth={depth} must be >= 1")
        self.in_channels, self.out_channels, self.groups, self.depth = in_channels, out_channels, groups, depth
        self.kernel_size = _pair(kernel_size)
        self.stride = check_stride(stride, name)
        self.padding = symmetric_padding(padding)
        self.dilation = _pair(dilation)
        self.sampler = SubmapSampler(sampler, seed)
        depth_dims = () if depth == 1 else (depth,)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *depth_dims, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """`nn.Conv2d`'s initialisation, with the fan-in counting the depth."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, sampler: str = "naive", seed: int = 0) -> CheckeredConv2d:
        """The checkered form of `conv`, sharing its weight and bias Parameters."""
        if conv.padding_mode != "zeros":
            raise ValueError(f"{cls.__name__}: padding_mode={conv.padding_mode!r} is not supported (only 'zeros')")
        padding = conv.padding
        if isinstance(padding, str):
            if padding == "same" and any(d * (k - 1) % 2 for d, k in zip(conv.dilation, conv.kernel_size)):
                raise ValueError(f"{cls.__name__}: padding='same' with kernel {conv.kernel_size} pads unevenly; give it as numbers")
            padding = (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding, conv.dilation, conv.groups,
            conv.bias is not None, sampler=sampler, seed=seed,
        )
        layer.weight, layer.bias = conv.weight, conv.bias
        return layer

    def forward(self, x: Tensor) -> Tensor:
        x = as_submaps(x, type(self).__name__)
        sampling = self.sampler.sampling(x.shape[2] - self.depth + 1, self.training) if self.stride == 2 else None
        return checkered_conv2d(
            x, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups, sampling=sampling
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, depth={self.depth}, groups={self.groups}, bias={self.bias is not None}, {self.sampler}"
        )
