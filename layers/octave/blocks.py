"""Octave versions of the layers around a convolution, so octave blocks read like plain ones
(arXiv:1904.05049): each applies its plain counterpart to both parts of an `(x_h, x_l)` pair.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from layers.octave.functional import upsample_to
from layers.octave.octave_conv import OctaveConv, OctavePair, as_pair, low_channels


def octave_add(first: OctavePair, second: OctavePair) -> OctavePair:
    """Part-wise sum of two pairs with the same split (residual connections)."""
    (first_h, first_l), (second_h, second_l) = first, second
    if (first_l is None) != (second_l is None):
        raise ValueError("octave_add: one pair has a low-frequency part and the other has not (different alphas)")
    return first_h + second_h, None if first_l is None else first_l + second_l


def octave_merge(x: Tensor | OctavePair) -> Tensor:
    """`(x_h (B, Ch, H, W), x_l (B, Cl, H/2, W/2)) -> (B, Ch + Cl, H, W)`: the low part upsampled
    (nearest) and concatenated after the high part; `x_h` alone when there is no low part."""
    x_h, x_l = as_pair(x)
    return x_h if x_l is None else torch.cat([x_h, upsample_to(x_l, x_h.shape[-2:])], dim=1)


class OctaveBatchNorm(nn.Module):
    """Separate batch norms for the two parts: `(B, C - int(alpha C), H, W), (B, int(alpha C), H/2, W/2)`."""

    def __init__(self, channels: int, alpha: float, **options) -> None:
        super().__init__()
        low = low_channels(channels, alpha)
        self.norm_h = nn.BatchNorm2d(channels - low, **options)
        self.norm_l = nn.BatchNorm2d(low, **options) if low else None

    @classmethod
    def from_norm(cls, norm: nn.BatchNorm2d, alpha: float) -> OctaveBatchNorm:
        """Split `norm` (its affine parameters and running statistics) into the two parts, high channels first."""
        octave = cls(norm.num_features, alpha, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                     track_running_stats=norm.track_running_stats)  # fmt: skip
        high = octave.norm_h.num_features
        plain = norm.state_dict()
        for part, index in ((octave.norm_h, slice(None, high)), (octave.norm_l, slice(high, None))):
            if part is not None:
                part.load_state_dict({k: v if v.ndim == 0 else v[index] for k, v in plain.items()})
        return octave

    def forward(self, x: OctavePair) -> OctavePair:
        x_h, x_l = x
        return self.norm_h(x_h), None if x_l is None else self.norm_l(x_l)


class OctaveApply(nn.Module):
    """A parameter-free layer (activation, pooling, dropout) applied to both parts, e.g.
    `OctaveApply(nn.ReLU(inplace=True))` or `OctaveApply(nn.MaxPool2d(3, 2, 1))`."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        if any(True for _ in layer.parameters()):
            raise ValueError(f"OctaveApply: {type(layer).__name__} has parameters; give each part its own layer")
        self.layer = layer

    def forward(self, x: OctavePair) -> OctavePair:
        x_h, x_l = x
        return self.layer(x_h), None if x_l is None else self.layer(x_l)


class OctaveConvBN(nn.Sequential):
    """`OctaveConv` then `OctaveBatchNorm` (with the output's alpha), then `activation` on both parts when given.

    Same arguments as `OctaveConv` (bias off: the norm has one), plus `activation` (an
    `nn.Module` without parameters, or None).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, alpha_in: float = 0.5, alpha_out: float = 0.5,
                 activation: nn.Module | None = None, **conv_options) -> None:  # fmt: skip
        layers = [
            OctaveConv(in_channels, out_channels, kernel_size, alpha_in, alpha_out, bias=False, **conv_options),
            OctaveBatchNorm(out_channels, alpha_out),
        ]
        if activation is not None:
            layers.append(OctaveApply(activation))
        super().__init__(*layers)


class OctaveConvBNAct(OctaveConvBN):
    """`OctaveConvBN` with an activation (ReLU unless given)."""

    def __init__(self, *args, activation: nn.Module | None = None, **options) -> None:
        super().__init__(*args, activation=activation if activation is not None else nn.ReLU(inplace=True), **options)


class OctaveResidual(nn.Module):
    """`activation(residual(x) + shortcut(x))` on pairs; `residual` and `shortcut` map pairs to pairs."""

    def __init__(self, residual: nn.Module, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.residual, self.shortcut, self.activation = residual, shortcut, OctaveApply(copy.deepcopy(activation))

    def forward(self, x: Tensor | OctavePair) -> OctavePair:
        x = as_pair(x)
        return self.activation(octave_add(self.residual(x), self.shortcut(x)))


class OctaveTrunk(nn.Module):
    """`(B, C, H, W)` or a pair `-> (B, C', H', W')`: runs octave `layers` and merges the final pair
    back into one tensor (`octave_merge`), so the plain layers after it see a plain tensor.

    The layers run in channels-last memory format (the output keeps it; values and shapes are
    those of any layout): an octave net makes about twice the convolution, norm and pooling
    calls of its plain net on half-size maps, and in the default (NCHW) format every
    convolution first reorders its input and weight, which on CPU cost an Oct-ResNet-50 as
    much as the MACs it saves (`benchmarks/octave.py`)."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: Tensor | OctavePair) -> Tensor:
        x_h, x_l = as_pair(x)
        x_h, x_l = (None if part is None else _ChannelsLast.apply(part) for part in (x_h, x_l))
        return octave_merge(self.layers((x_h, x_l)))


class _ChannelsLast(torch.autograd.Function):
    """`x` in channels-last format; its gradient goes back in `x`'s own format, so the plain
    layers before an `OctaveTrunk` get the layout they computed in (else each of their
    backward steps would convert the gradient, at their larger maps)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad if ctx.channels_last else grad.contiguous()


__all__ = ["OctaveApply", "OctaveBatchNorm", "OctaveConv", "OctaveConvBN", "OctaveConvBNAct", "OctaveResidual", "OctaveTrunk",
           "octave_add", "octave_merge"]  # fmt: skip
