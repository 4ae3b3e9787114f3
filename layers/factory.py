"""The contract between models and convolution families.

A model takes a `conv` factory and calls it for every spatial convolution it builds, so
that `conv=<family>` on the command line swaps a model's convolutions without a new
model file. There are two kinds of family:

- per-convolution families (standard, box, DCLS, FlexConv/CKConv) provide a factory with the
  signature of `ConvFactory`; `standard_conv` is the plain `nn.ConvNd` family;
- whole-model families (checkered, octave) provide a `ModelConversion`, applied to the net
  built with `standard_conv`.

`engine.nets.build_net` tells the two apart, so neither the entry scripts nor the models
grow a case per family.

Layers tell the training loop what they need through small duck-typed protocols, which the
task modules and callbacks look for on every module of the net (no per-family branches):
`ParameterOptions` (per-parameter learning-rate factor and weight decay), `AuxiliaryLoss`
(a term added to the training loss), `ConstrainedParameters` (clamped after every optimiser
step) and `LearnedExtent` (receptive-field sizes for `callbacks=receptive_field`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from torch import Tensor, nn

_CONV_BY_DIM = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvFactory(Protocol):
    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        dim: int = 2,
    ) -> nn.Module:
        """Build a convolution `(B, in_channels, *S) -> (B, out_channels, *S')` of rank `dim`."""
        ...


def standard_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    dim: int = 2,
) -> nn.Module:
    """The `standard` family: `nn.Conv1d`/`nn.Conv2d`/`nn.Conv3d` for `dim` 1/2/3."""
    if dim not in _CONV_BY_DIM:
        raise ValueError(f"standard_conv: dim={dim} is not one of {sorted(_CONV_BY_DIM)}")
    return _CONV_BY_DIM[dim](
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias
    )


class ModelConversion(ABC):
    """A whole-model family (checkered, octave): it changes more than the convolutions (norms,
    pools, the tensors passed between layers), so it converts a net built with plain
    convolutions instead of being called for each convolution.

    A `cfg/conv/<family>.yaml` of this kind targets a subclass (not partial; its keys are the
    conversion's options). `engine.nets.build_net` builds the net with `standard_conv` and
    returns `conversion(net)`, which must accept and return what the plain net did.
    """

    @abstractmethod
    def __call__(self, model: nn.Module) -> nn.Module:
        """Convert `model` (its weights reused where the family allows) and return it."""


class ParameterOptions(Protocol):
    """Modules whose parameters want their own optimiser settings expose them by local name.

    The task modules read this when they build parameter groups, so a family can give, e.g.,
    DCLS positions a larger learning rate and no weight decay without a per-family branch:
    `{"P": {"lr_factor": 5.0, "weight_decay": 0.0}}`. `lr_factor` multiplies the optimiser's
    learning rate; any other key (e.g. `weight_decay`) overrides the optimiser's value.
    """

    def parameter_options(self) -> dict[str, dict[str, float]]: ...


class LearnedExtent(Protocol):
    """Layers whose spatial extent is learned (box sizes, DCLS position spread, FlexConv mask
    size) report it in input pixels, so one callback can log receptive fields growing during
    training for every family without a per-family branch.

    Returns named 1-D tensors, one value per filter / kernel element / dimension, e.g.
    `{"width": (C*F,), "height": (C*F,)}`; detached, on any device.
    """

    def learned_extent(self) -> dict[str, Tensor]: ...


class AuxiliaryLoss(Protocol):
    """Modules that add a term to the training loss (e.g. FlexConv's anti-aliasing
    regulariser) return it, already weighted, as a scalar tensor; None when they have
    nothing to add. The task modules sum these terms over the net and add them to the loss
    of every training step (logged as `train/aux_loss`), without a per-family branch.
    """

    def auxiliary_loss(self) -> Tensor | None: ...


class ConstrainedParameters(Protocol):
    """Modules whose parameters must stay in a set (e.g. DCLS positions inside their dilated
    kernel) project them back in place; the task modules call this after every optimiser
    step, before anything (a checkpoint, validation) sees the parameters.
    """

    def clamp_parameters(self) -> None: ...
