"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv:1904.05049).

A feature map is a pair `(x_h, x_l)`: `x_h (B, C - int(alpha*C), H, W)` at full resolution
and `x_l (B, int(alpha*C), ceil(H/2), ceil(W/2))` at half resolution, or None when
alpha = 0. `OctaveConv` maps pairs to pairs through four paths (high->high, high->low,
low->low, low->high); `alpha_in = 0` makes it the first octave layer of a net (a plain
tensor in), `alpha_out = 0` the last one (`(y_h, None)` out).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from layers.octave.functional import HIGH_TO_LOW_DOWNSAMPLING, OctaveWeights, octave_conv2d
from layers.octave.reference import octave_conv2d_reference

OctavePair = tuple[Tensor, "Tensor | None"]
_IMPLS = ("auto", "reference", "fused")


def low_channels(channels: int, alpha: float) -> int:
    """Channels of the low-frequency part: `int(alpha * channels)` (as the official code)."""
    return int(alpha * channels)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"octave: {name}={alpha} is not in [0, 1) (the share of low-frequency channels)")
    return alpha


def as_pair(x: Tensor | OctavePair) -> OctavePair:
    """A plain tensor is the pair `(x, None)` (alpha = 0)."""
    return (x, None) if isinstance(x, Tensor) else x


class OctaveConv(nn.Module):
    """`(x_h (B, Ch_in, H, W), x_l (B, Cl_in, ceil(H/2), ceil(W/2)) | None) -> (y_h (B, Ch_out, H/s, W/s), y_l | None)`.

    `Cl = int(alpha * C)`, `Ch = C - Cl`. A plain tensor input is `(x, None)`. The convolution
    must keep the spatial size (`2 * padding == dilation * (kernel_size - 1)`) so the two
    resolutions stay aligned; `stride` 2 average-pools before convolving. The parameter count
    equals that of `nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)`
    when all paths are on.

    Args:
        alpha_in, alpha_out: low-frequency shares of the input and output channels, in [0, 1).
        groups: grouped convolution on every path; `groups == in_channels == out_channels`
            with `alpha_in == alpha_out` is depthwise (only high->high and low->low exist).
        bias: one bias per output channel (added once, not once per path).
        high_to_low, low_to_high: switch those paths off (the paper's Table 3 ablation).
        high_to_low_downsample: how high->low halves the resolution: `avg_pool` (the paper's
            choice) or `strided_conv` (Table 3's alternative).
        impl: `fused` (fewer convolution launches; groups = 1), `reference` (four
            convolutions), `auto` (fused where it applies).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        alpha_in: float = 0.5,
        alpha_out: float = 0.5,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        high_to_low: bool = True,
        low_to_high: bool = True,
        high_to_low_downsample: str = "avg_pool",
        impl: str = "auto",
    ) -> None:
        super().__init__()
        check_alpha(alpha_in, "alpha_in")
        check_alpha(alpha_out, "alpha_out")
        if stride not in (1, 2):
            raise ValueError(f"OctaveConv: stride={stride} is not 1 or 2")
        if 2 * padding != dilation * (kernel_size - 1):
            raise ValueError(
                f"OctaveConv: padding={padding} does not keep the size for kernel_size={kernel_size}, dilation={dilation} "
                f"(needs {dilation * (kernel_size - 1) / 2})"
            )
        if high_to_low_downsample not in HIGH_TO_LOW_DOWNSAMPLING:
            raise ValueError(f"OctaveConv: high_to_low_downsample={high_to_low_downsample!r} is not one of {list(HIGH_TO_LOW_DOWNSAMPLING)}")
        if impl not in _IMPLS:
            raise ValueError(f"OctaveConv: impl={impl!r} is not one of {list(_IMPLS)}")
        if impl == "fused" and groups != 1:
            raise ValueError(f"OctaveConv: impl='fused' needs groups=1, got groups={groups} (use 'auto' or 'reference')")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.alpha_in, self.alpha_out = alpha_in, alpha_out
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.impl, self.high_to_low_downsample = impl, high_to_low_downsample
        low_in, low_out = low_channels(in_channels, alpha_in), low_channels(out_channels, alpha_out)
        high_in, high_out = in_channels - low_in, out_channels - low_out
        self.depthwise = groups > 1 and groups == in_channels == out_channels
        if self.depthwise and low_in != low_out:
            raise ValueError(f"OctaveConv: depthwise needs alpha_in == alpha_out, got {alpha_in} and {alpha_out}")
        if not self.depthwise and any(c % groups for c in (low_in, high_in, low_out, high_out)):
            raise ValueError(
                f"OctaveConv: groups={groups} must divide every part, got high/low in {high_in}/{low_in}, out {high_out}/{low_out}"
            )
        if self.depthwise:
            high_to_low = low_to_high = False
        elif low_out and not low_in and not high_to_low:
            raise ValueError("OctaveConv: with alpha_in=0 the low output needs the high_to_low path")
        self.channels_in, self.channels_out = (high_in, low_in), (high_out, low_out)
        self.fan_in = in_channels // groups * kernel_size**2

        def path(source: int, target: int, on: bool = True) -> nn.Parameter | None:
            if not (on and source and target):
                return None
            per_group = 1 if self.depthwise else source // groups
            # channels last, like the maps of an `OctaveTrunk`: no weight reorder per call
            return nn.Parameter(torch.empty(target, per_group, kernel_size, kernel_size, memory_format=torch.channels_last))

        self.weight_hh = path(high_in, high_out)
        self.weight_hl = path(high_in, low_out, high_to_low)
        self.weight_lh = path(low_in, high_out, low_to_high)
        self.weight_ll = path(low_in, low_out)
        self.bias_h = nn.Parameter(torch.empty(high_out)) if bias else None
        self.bias_l = nn.Parameter(torch.empty(low_out)) if bias and low_out else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every path drawn like `nn.Conv2d`'s weight for the whole layer (bound `1/sqrt(fan_in)`)."""
        bound = 1.0 / math.sqrt(self.fan_in)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, alpha_in: float, alpha_out: float, **options) -> OctaveConv:
        """The octave version of `conv`, its weights split into the four paths (channels ordered
        high then low) where the layouts correspond (groups 1 and depthwise); grouped layers start fresh."""
        (kernel_size, other), (stride, _), (padding, _), (dilation, _) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        if kernel_size != other or not isinstance(padding, int):
            raise ValueError(f"convert_to_octave: only square kernels with integer padding convert, got {conv}")
        octave = cls(conv.in_channels, conv.out_channels, kernel_size, alpha_in, alpha_out, stride, padding, dilation,
                     conv.groups, conv.bias is not None, **options)  # fmt: skip
        if conv.groups == 1 or octave.depthwise:
            octave.load_dense(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
        return octave

    @torch.no_grad()
    def load_dense(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Take the weights of the equivalent plain layer: `weight (C_out, C_in / groups, k, k)`, channels ordered high then low."""
        (high_in, _), (high_out, _) = self.channels_in, self.channels_out
        if self.depthwise:
            blocks = {"hh": weight[:high_out], "ll": weight[high_out:]}
        else:
            rows = {"h": weight[:high_out], "l": weight[high_out:]}
            blocks = {out + src: rows[out][:, slice(None, high_in) if src == "h" else slice(high_in, None)]
                      for out in "hl" for src in "hl"}  # fmt: skip
        for name, block in blocks.items():
            parameter = getattr(self, f"weight_{name[1]}{name[0]}")
            if parameter is not None:
                parameter.copy_(block)
        if bias is not None:
            self.bias_h.copy_(bias[:high_out])
            if self.bias_l is not None:
                self.bias_l.copy_(bias[high_out:])

    def weights(self) -> OctaveWeights:
        return OctaveWeights(self.weight_hh, self.weight_hl, self.weight_lh, self.weight_ll)

    def forward(self, x: Tensor | OctavePair) -> OctavePair:
        x_h, x_l = as_pair(x)
        if (x_l is None) != (self.channels_in[1] == 0):
            raise ValueError(f"OctaveConv: alpha_in={self.alpha_in} expects x_l {'of' if self.channels_in[1] else 'None, not'} "
                             f"{self.channels_in[1]} channels, got {None if x_l is None else tuple(x_l.shape)}")  # fmt: skip
        fused = self.impl == "fused" or self.impl == "auto" and self.groups == 1
        function = octave_conv2d if fused else octave_conv2d_reference
        return function(x_h, x_l, self.weights(), self.bias_h, self.bias_l, self.stride, self.padding, self.dilation,
                        self.high_to_low_downsample)  # fmt: skip

    def extra_repr(self) -> str:
        (high_in, low_in), (high_out, low_out) = self.channels_in, self.channels_out
        paths = [name for name, weight in zip(("hh", "hl", "lh", "ll"), self.weights()) if weight is not None]
        return (f"({high_in}, {low_in}) -> ({high_out}, {low_out}), kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, paths={paths}"
                + (", high_to_low_downsample=strided_conv" if self.high_to_low_downsample == "strided_conv" else ""))  # fmt: skip
