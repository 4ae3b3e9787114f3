"""Oct-ResNets (Chen et al., "Drop an Octave", ICCV 2019, arXiv:1904.05049): ResNets whose
residual blocks run octave convolutions.

`OctResNet` is a `ResNet` converted by `convert_to_octave`, so plain and octave nets share
one architecture definition and `conv=octave` turns any `net=resnet*` into the same model.
As in the official Oct-ResNets (facebookresearch/OctConv, `resnetv1.py`): the stem stays
plain, every bottleneck convolution and projection shortcut is octave, the first block's
conv1 and projection take the plain stem output (alpha_in = 0), and the last stage has
alpha = 0 (its first block's conv1 and projection return to a plain map); pre-activation
ResNets (`pre_activation=True`, the nets of the paper's ImageNet ablation, `resnetv2`) convert
the same way, with nothing after the sum. CIFAR ResNets,
whose first block has an identity shortcut, make the stem convolution the first octave
layer instead.

The same module registers the octave rules of the framework's other plain nets, so
`conv=octave` converts them too: those made of a `features` trunk and a plain head
(`SimpleCNN` in 2-D, `VGG`, the plain `ToyMNISTNet`) convert their trunk as a Sequential;
Wide ResNets convert like CIFAR ResNets, a stage per group. DenseNets do not convert (their
dense concatenations would need an octave concatenation whose channel split matches).
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from layers.octave import OctaveResidual, OctaveTrunk, convert_features, convert_to_octave, octave_layer
from layers.octave.convert import conversion_options
from layers.octave.octave_conv import check_alpha
from models.ccnn import ToyMNISTNet
from models.resnet import ResNet, _ResidualBlock
from models.simple_cnn import SimpleCNN
from models.vgg import VGG
from models.wide_resnet import WideBlock, WideResNet

for _features_net in (SimpleCNN, VGG, ToyMNISTNet):
    convert_to_octave.register(_features_net)(convert_features)


def _octave_residual(block: _ResidualBlock | WideBlock, alpha_in: float, alpha_out: float, options: dict[str, Any],
                     activation: nn.Module) -> OctaveResidual:  # fmt: skip
    if isinstance(block.shortcut, nn.Identity) and alpha_in != alpha_out:
        raise ValueError(f"convert_to_octave: a block with an identity shortcut cannot change alpha from {alpha_in} to {alpha_out}")
    residual = octave_layer(block.residual, alpha_in, alpha_out, options)
    shortcut = octave_layer(block.shortcut, alpha_in, alpha_out, options)
    return OctaveResidual(residual, shortcut, activation)


@octave_layer.register
def _(block: _ResidualBlock, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    return _octave_residual(block, alpha_in, alpha_out, options, block.activation)


@octave_layer.register
def _(block: WideBlock, alpha_in: float, alpha_out: float, options: dict[str, Any]) -> nn.Module:
    return _octave_residual(block, alpha_in, alpha_out, options, nn.Identity())  # pre-activation: nothing after the sum


def _convert_stages(stem: nn.Module, stages: list[nn.Sequential], alpha: float, stage_alphas: Sequence[float] | None,
                    options: dict[str, Any]) -> tuple[nn.Module, OctaveTrunk, list[float]]:  # fmt: skip
    """The octave stem and trunk of a residual net: each stage at its alpha (default `alpha`, the
    last stage 0); alpha changes in a stage's first block (its projection shortcut), or in the
    stem when the first block has an identity shortcut."""
    check_alpha(alpha)
    if stage_alphas is None:
        stage_alphas = [alpha] * (len(stages) - 1) + [0.0]
    if len(stage_alphas) != len(stages):
        raise ValueError(f"convert_to_octave: stage_alphas={list(stage_alphas)} needs one alpha per stage ({len(stages)})")
    for value in stage_alphas:
        check_alpha(value, "stage_alphas")
    options = conversion_options(**options)
    current = 0.0
    if isinstance(stages[0][0].shortcut, nn.Identity):
        current = stage_alphas[0]
        stem = octave_layer(stem, 0.0, current, options)
    octave_stages = []
    for stage, stage_alpha in zip(stages, stage_alphas):
        octave_stages.append(nn.Sequential(*(octave_layer(block, current if index == 0 else stage_alpha, stage_alpha, options)
                                             for index, block in enumerate(stage))))  # fmt: skip
        current = stage_alpha
    return stem, OctaveTrunk(nn.Sequential(*octave_stages)), list(stage_alphas)


def _check_plain(model: nn.Module, trunk: nn.Module) -> None:
    if any(isinstance(module, OctaveTrunk) for module in trunk.modules()):
        raise ValueError(f"convert_to_octave: {type(model).__name__} is already octave (use a plain net with conv=octave)")


@convert_to_octave.register
def _(model: ResNet, alpha: float, stage_alphas: Sequence[float] | None = None, **options) -> ResNet:
    _check_plain(model, model.stages)
    model.stem, model.stages, model.stage_alphas = _convert_stages(model.stem, list(model.stages), alpha, stage_alphas, options)
    model.alpha = alpha
    return model.train(model.training)


@convert_to_octave.register
def _(model: WideResNet, alpha: float, stage_alphas: Sequence[float] | None = None, **options) -> WideResNet:
    """`features` is the stem convolution, the blocks, then the final BN-ReLU; a group (stage)
    starts at every block with a projection shortcut."""
    _check_plain(model, model.features)
    stem, *blocks, norm, relu = model.features
    stages: list[list[WideBlock]] = []
    for block in blocks:
        if not stages or not isinstance(block.shortcut, nn.Identity):
            stages.append([])
        stages[-1].append(block)
    stem, trunk, model.stage_alphas = _convert_stages(stem, [nn.Sequential(*stage) for stage in stages], alpha, stage_alphas, options)
    model.features = nn.Sequential(stem, trunk, norm, relu)
    model.alpha = alpha
    return model.train(model.training)


class OctResNet(ResNet):
    """`(B, C, H, W) -> (B, K)`: `ResNet(**resnet_options)` converted by `convert_to_octave`.

    Args:
        alpha: low-frequency share of the octave layers, in [0, 1) (0 gives the plain ResNet).
        stage_alphas: one alpha per stage (default: `alpha`, and 0 for the last stage).
        high_to_low, low_to_high: switch those paths off in every octave layer (ablation).
        high_to_low_downsample: `avg_pool` (the paper's) or `strided_conv` (Table 3's alternative).
        impl: `OctaveConv` implementation (`auto`, `fused`, `reference`).
        **resnet_options: `ResNet`'s arguments (`in_channels`, `num_classes`, `block`, `layers`, ...).
    """

    def __init__(self, alpha: float = 0.25, stage_alphas: Sequence[float] | None = None, high_to_low: bool = True,
                 low_to_high: bool = True, high_to_low_downsample: str = "avg_pool", impl: str = "auto",
                 **resnet_options) -> None:  # fmt: skip
        check_alpha(alpha)
        super().__init__(**resnet_options)
        convert_to_octave(self, alpha, stage_alphas, high_to_low=high_to_low, low_to_high=low_to_high,
                          high_to_low_downsample=high_to_low_downsample, impl=impl)  # fmt: skip
