"""`convert_to_octave`: the octave version of a plain CNN (arXiv:1904.05049, Sec. 3.3).

Every convolution between the first and the last one that the conversion reaches becomes an
`OctaveConv` with its plain weights split into paths; norms, activations and pools act on
both parts. The first octave layer takes a plain tensor (alpha_in = 0), the last returns
one (alpha_out = 0), and the layers outside that span stay plain, as in the paper.

Two registries extend it without touching this file: `octave_layer.register(T)` teaches it
a new building block (e.g. a residual block), `convert_to_octave.register(T)` a whole
architecture (where its octave span starts and ends, the alpha of each stage).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from layers.octave.blocks import OctaveApply, OctaveBatchNorm, OctaveTrunk
from layers.octave.octave_conv import OctaveConv, check_alpha


@functools.singledispatch
def octave_layer(module: nn.Module, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    """The octave version of one layer, mapping pairs of split `alpha_in` to pairs of split
    `alpha_out`; `options` go to every `OctaveConv` (`high_to_low`, `low_to_high`,
    `high_to_low_downsample`, `impl`).

    Parameter-free layers (activations, pools, dropout, identity) act on both parts; any
    other type needs its own registered conversion.
    """
    if isinstance(module, nn.modules.conv._ConvNd):
        raise ValueError(f"convert_to_octave: {type(module).__name__} is not an nn.Conv2d; octave convolution is 2-D only")
    has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
    if has_state:
        raise ValueError(f"convert_to_octave: no octave version of {type(module).__name__} (register one with octave_layer.register)")
    if alpha_in != alpha_out:
        raise ValueError(f"convert_to_octave: {type(module).__name__} cannot change alpha from {alpha_in} to {alpha_out}")
    return OctaveApply(module)


@octave_layer.register
def _(module: nn.Conv2d, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    # The ablation switches only drop exchange paths: the first octave layer's high->low path
    # is the low part's only source, the last one's low->high path its only sink.
    options = options | ({"high_to_low": True} if alpha_in == 0 else {}) | ({"low_to_high": True} if alpha_out == 0 else {})
    return OctaveConv.from_conv(module, alpha_in, alpha_out, **options)


@octave_layer.register
def _(module: nn.BatchNorm2d, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    if alpha_in != alpha_out:
        raise ValueError(f"convert_to_octave: a batch norm cannot change alpha from {alpha_in} to {alpha_out}")
    return OctaveBatchNorm.from_norm(module, alpha_in)


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(child, nn.modules.conv._ConvNd) for child in module.modules())


@octave_layer.register
def _(module: nn.Sequential, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    """The first child with a convolution changes alpha; the children before it keep `alpha_in`, those after it `alpha_out`."""
    layers, alpha = [], alpha_in
    for child in module:
        target = alpha_out if _has_conv(child) else alpha
        layers.append(octave_layer(child, alpha, target, options))
        alpha = target
    if alpha != alpha_out:
        raise ValueError(f"convert_to_octave: no convolution in {module} to change alpha from {alpha_in} to {alpha_out}")
    return nn.Sequential(*layers)


def conversion_options(high_to_low: bool = True, low_to_high: bool = True, high_to_low_downsample: str = "avg_pool",
                       impl: str = "auto") -> dict[str, Any]:  # fmt: skip
    return {"high_to_low": high_to_low, "low_to_high": low_to_high, "high_to_low_downsample": high_to_low_downsample, "impl": impl}


@functools.singledispatch
def convert_to_octave(model: nn.Module, alpha: float, stage_alphas: list[float] | None = None, **options) -> nn.Module:
    """The octave version of `model`, with the same inputs and outputs; its plain layers are
    reused, so use the returned model (architectures convert in place, a Sequential is rebuilt).

    `alpha` is the low-frequency share of the octave layers; `stage_alphas` gives one per
    stage where the architecture has stages (e.g. ResNets; default `alpha` everywhere but
    the last stage, which is 0 as in the official Oct-ResNets). `options`: `high_to_low`,
    `low_to_high` (path ablation), `high_to_low_downsample` (`avg_pool` or `strided_conv`), `impl`.

    A plain `nn.Sequential` converts from its first child with a convolution (alpha_in = 0)
    to its last (alpha_out = 0); a lone convolution becomes a first octave layer whose pair
    is merged back into one map (`octave_merge`). Architectures register their own rule
    (`convert_to_octave.register`); any other model is an error naming those that convert.
    """
    convertible = sorted(cls.__name__ for cls in convert_to_octave.registry if cls is not object)
    raise ValueError(
        f"convert_to_octave: no octave conversion for {type(model).__name__}; these convert: {', '.join(convertible)} "
        "(register more with convert_to_octave.register)"
    )


@convert_to_octave.register
def _(model: nn.Sequential, alpha: float, stage_alphas: list[float] | None = None, **options) -> nn.Sequential:
    check_alpha(alpha)
    if stage_alphas is not None:
        raise ValueError("convert_to_octave: stage_alphas needs an architecture with stages, not an nn.Sequential")
    with_conv = [index for index, child in enumerate(model) if _has_conv(child)]
    if not with_conv:
        raise ValueError("convert_to_octave: the nn.Sequential has no nn.Conv2d to convert")
    first, last = with_conv[0], with_conv[-1]
    middle = nn.Sequential(*model[first : last + 1])
    options = conversion_options(**options)
    octave = [octave_layer(middle[0], 0.0, alpha, options)]
    octave += [octave_layer(child, alpha, alpha, options) for child in middle[1:-1]]
    if len(middle) > 1:
        octave.append(octave_layer(middle[-1], alpha, 0.0, options))
    # A lone convolution is only a first octave layer: `OctaveTrunk` merges its pair back.
    return nn.Sequential(*model[:first], OctaveTrunk(nn.Sequential(*octave)), *model[last + 1 :]).train(model.training)


def convert_features(model: nn.Module, alpha: float, stage_alphas: list[float] | None = None, **options) -> nn.Module:
    """In place: `model.features` (an `nn.Sequential`) converted as a Sequential; the rule of
    nets made of a convolutional `features` trunk then a plain head (register it for such a
    net with `convert_to_octave.register(Net)(convert_features)`)."""
    if any(isinstance(child, OctaveTrunk) for child in model.features):
        raise ValueError(f"convert_to_octave: {type(model).__name__} is already octave (use a plain net with conv=octave)")
    try:
        model.features = convert_to_octave(model.features, alpha, stage_alphas, **options)
    except ValueError as error:
        raise ValueError(f"{error} (in {type(model).__name__}.features)") from None
    return model
