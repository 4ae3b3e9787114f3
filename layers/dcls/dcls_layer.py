"""`Dcls1d`, `Dcls2d`, `Dcls3d`: convolutions whose K kernel elements sit at learned positions.

Dilated Convolution with Learnable Spacings (Khalfaoui-Hassani, Pellegrini, Masquelier,
ICLR 2023, arXiv 2112.03740); Gaussian interpolation from "Dilated Convolution with
Learnable Spacings: beyond bilinear interpolation" (arXiv 2306.00817).

The constructor, parameter names (`weight`, `P`, `SIG`, `bias`) and initialisation are
those of the `dcls` 0.1.1 package, so its users can swap imports. The axis convention of
`P` (`P[0]` moves along the last spatial axis) is `dcls`' for `v1`, `max` and `gauss`, and
now also for `v0`; see `layers/dcls/reference.py` for what else differs (non-square and
even kernels, gradients at kinks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init

from layers.dcls.fft_conv import depthwise_fft_conv
from layers.dcls.functional import IMPLEMENTATIONS, construct_kernel
from layers.dcls.reference import HAS_SIGMA, VERSIONS, axis_sizes, position_limits

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
CONV_IMPLEMENTATIONS = ("auto", "direct", "fft")
# `auto` convolves a depthwise kernel through the FFT on CPU (float32/float64, outside
# autocast) where the direct convolution's multiply-adds (output size x taps) are at least
# this many times the FFT's `n log2 n` over the padded input. Measured (benchmarks/dcls.py,
# 2-core CPU): 7x7 at 56x56 (ratio 3.4) and ConvNeXt-T's 17x17 at its 7x7 stage (3.0) are
# faster directly, 17x17 at 14x14 (6.4) 2x faster through the FFT, 13x13 to 23x23 at 56x56
# (9 to 20) 4.5-17x faster.
FFT_MIN_COST_RATIO = 4.0
GAUSS_SIGMA_INIT = 0.23
POSITION_INIT_STD = 0.5


def _tuple(value, ndim: int, name: str) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, int) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, int) for v in values):
        raise ValueError(f"Dcls{ndim}d: {name}={value!r} must be an int or {ndim} ints")
    return values


def repulsion(P: Tensor) -> Tensor:
    """Mean over filters and unordered pairs of elements of `relu(1 - |p_i - p_j|)`: 0 when
    every two elements of a filter are at least one pixel apart (Euclidean, over all axes),
    up to 1 when they coincide.

    The repulsion term of "Dilated Convolution with Learnable Spacings" (arXiv 2112.03740);
    its ConvNeXt training code averages it over layers, squares it and adds it from epoch 20.
    At exactly coincident elements the direction is undefined and the gradient is 0.

    Args:
        P: `(ndim, C_out, C_in/g, K)` positions.
    Returns:
        A scalar (0 when K = 1).
    """
    count = P.shape[-1]
    first, second = torch.triu_indices(count, count, offset=1, device=P.device)
    positions = P.flatten(1, 2)  # (ndim, filters, K)
    distance = torch.linalg.vector_norm(positions[..., first] - positions[..., second], dim=0)
    return torch.relu(1 - distance).mean() if first.numel() else P.new_zeros(())


class _DclsNd(nn.Module):
    """Shared body of `Dcls1d/2d/3d`: `(B, C_in, *S) -> (B, C_out, *S')`, with `S'` as for a
    convolution with kernel `dilated_kernel_size`, `stride` and `padding`.

    The convolution is direct (`conv_impl="direct"`) or through the FFT (`"fft"`, depthwise
    layers with stride 1 only); `"auto"` picks by `uses_fft`.

    `repulsion_factor` > 0 adds `repulsion_factor * repulsion(P)` to the training loss
    (`auxiliary_loss`, see `layers.factory.AuxiliaryLoss`).

    Parameters:
        weight: `(C_out, C_in/g, K)`; P: `(ndim, C_out, C_in/g, K)` centred positions,
        `P[0]` along the last spatial axis; SIG: same shape (`max`, `gauss`); bias: `(C_out,)`.
    """

    ndim: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride=1,
        padding=0,
        dilated_kernel_size=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "gauss",
        impl: str = "auto",
        position_lr_factor: float = 1.0,
        position_weight_decay: float | None = None,
        repulsion_factor: float = 0.0,
        conv_impl: str = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if version not in VERSIONS:
            raise ValueError(f"{name}: version={version!r} is not one of {VERSIONS}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode={padding_mode!r} is not one of {PADDING_MODES}")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"{name}: impl={impl!r} is not one of {IMPLEMENTATIONS}")
        if conv_impl not in CONV_IMPLEMENTATIONS:
            raise ValueError(f"{name}: conv_impl={conv_impl!r} is not one of {CONV_IMPLEMENTATIONS}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.dilated_kernel_size = _tuple(dilated_kernel_size, self.ndim, "dilated_kernel_size")
        if min(self.dilated_kernel_size) < 1:
            raise ValueError(f"{name}: dilated_kernel_size={dilated_kernel_size!r} must be positive")
        taps = math.prod(self.dilated_kernel_size)
        if not 1 <= kernel_count <= taps:
            raise ValueError(f"{name}: kernel_count={kernel_count} must be in [1, {taps}] (the taps of dilated_kernel_size={self.dilated_kernel_size})")
        self.in_channels, self.out_channels, self.kernel_count = in_channels, out_channels, kernel_count
        self.stride = _tuple(stride, self.ndim, "stride")
        self.padding = _tuple(padding, self.ndim, "padding")
        self.groups, self.padding_mode, self.version, self.impl = groups, padding_mode, version, impl
        self.depthwise = groups == in_channels == out_channels and all(step == 1 for step in self.stride)
        if conv_impl == "fft" and not self.depthwise:
            raise ValueError(f"{name}: conv_impl='fft' needs a depthwise layer (groups = in = out channels) with stride 1")
        self.conv_impl = conv_impl
        if not repulsion_factor >= 0:
            raise ValueError(f"{name}: repulsion_factor={repulsion_factor} must be >= 0")
        self.position_lr_factor, self.position_weight_decay = position_lr_factor, position_weight_decay
        self.repulsion_factor = repulsion_factor
        filters = (out_channels, in_channels // groups, kernel_count)
        self.weight = nn.Parameter(torch.empty(filters))
        self.P = nn.Parameter(torch.empty(self.ndim, *filters))
        self.SIG = nn.Parameter(torch.empty(self.ndim, *filters)) if version in HAS_SIGMA else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As `dcls` 0.1.1, in the same order of random draws: Kaiming-uniform weights and
        bias as `nn.ConvNd`, positions N(0, 0.5) clamped, SIG 0.23 (gauss) or 0 (max)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        with torch.no_grad():
            for a in range(self.ndim):
                init.normal_(self.P[a], 0, POSITION_INIT_STD)
            self.clamp_parameters()
            if self.SIG is not None:
                self.SIG.fill_(GAUSS_SIGMA_INIT if self.version == "gauss" else 0.0)

    @torch.no_grad()
    def clamp_parameters(self) -> None:
        """Clamp every position into the dilated kernel (in place); the tasks call it after every
        optimiser step (`layers.factory.ConstrainedParameters`)."""
        for a, size in enumerate(axis_sizes(self.dilated_kernel_size)):
            low, high = position_limits(size)
            self.P[a].clamp_(low, high)

    def kernel(self) -> Tensor:
        """The dense dilated kernel `(C_out, C_in/g, *dilated_kernel_size)`."""
        return construct_kernel(self.weight, self.P, self.SIG, self.dilated_kernel_size, self.version, self.impl)

    def uses_fft(self, input: Tensor) -> bool:
        """Whether the convolution of `input` goes through the FFT (`conv_impl`: `fft`, or
        `auto` for a depthwise layer on CPU in float32/float64 outside autocast whose direct
        convolution costs `FFT_MIN_COST_RATIO` times the FFT's or more; elsewhere the direct
        convolution, cuDNN on GPU)."""
        if self.conv_impl != "auto":
            return self.conv_impl == "fft"
        return (
            self.depthwise and input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and self._fft_pays(input.shape[2:])
        )  # fmt: skip

    def _fft_pays(self, size: tuple[int, ...]) -> bool:
        padded = [s + 2 * p for s, p in zip(size, self.padding)]
        outputs = math.prod(max(0, n - k + 1) for n, k in zip(padded, self.dilated_kernel_size))
        transform = math.prod(padded) * math.log2(max(2, math.prod(padded)))
        return outputs * math.prod(self.dilated_kernel_size) >= FFT_MIN_COST_RATIO * transform

    def forward(self, input: Tensor) -> Tensor:
        kernel = self.kernel()
        padding = self.padding
        if self.padding_mode != "zeros":
            reversed_padding = [p for p in reversed(self.padding) for _ in range(2)]
            input, padding = F.pad(input, reversed_padding, mode=self.padding_mode), (0,) * self.ndim
        if not self.uses_fft(input):
            return _CONV[self.ndim](input, kernel, self.bias, self.stride, padding, 1, self.groups)
        output = depthwise_fft_conv(input, kernel, padding)
        return output if self.bias is None else output + self.bias.view(-1, *([1] * self.ndim))

    def parameter_options(self) -> dict[str, dict[str, float]]:
        """Positions and SIG: their own learning-rate factor and weight decay (the paper's
        recipe uses x5 and none); nothing when left at the optimiser's settings."""
        options = {"lr_factor": self.position_lr_factor}
        if self.position_weight_decay is not None:
            options["weight_decay"] = self.position_weight_decay
        if options == {"lr_factor": 1.0}:
            return {}
        return {name: dict(options) for name in ("P", "SIG") if getattr(self, name) is not None}

    def auxiliary_loss(self) -> Tensor | None:
        """`repulsion_factor * repulsion(P)`, which pushes apart the elements of a filter closer
        than one pixel (the DCLS paper's repulsion loss); None when the factor is 0."""
        return self.repulsion_factor * repulsion(self.P) if self.repulsion_factor else None

    def learned_extent(self) -> dict[str, Tensor]:
        """Spread of the positions per spatial axis, in input pixels: for each filter, the
        range (max - min) of its K positions plus one, `(C_out*C_in/g,)` per axis."""
        positions = self.P.detach().flatten(1, 2)
        spread = positions.amax(-1) - positions.amin(-1) + 1
        names = ("x", "y", "z")
        return {f"spread_{names[a]}": spread[a] for a in range(self.ndim)}

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_count={self.kernel_count}, "
            f"dilated_kernel_size={self.dilated_kernel_size}, stride={self.stride}, padding={self.padding}, version={self.version}"
        )
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        if self.repulsion_factor:
            text += f", repulsion_factor={self.repulsion_factor}"
        return text


class Dcls1d(_DclsNd):
    """DCLS convolution over `(B, C_in, L)`; see `_DclsNd`."""

    ndim = 1


class Dcls2d(_DclsNd):
    """DCLS convolution over `(B, C_in, H, W)`; see `_DclsNd`. `use_implicit_gemm` is
    accepted for `dcls` compatibility and ignored (the convolution is PyTorch's)."""

    ndim = 2

    def __init__(self, *args, use_implicit_gemm: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)


class Dcls3d(_DclsNd):
    """DCLS convolution over `(B, C_in, D, H, W)`; see `_DclsNd`."""

    ndim = 3
