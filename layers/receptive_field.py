"""Gradient-based effective receptive field (ERF) of a net.

Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016 (arXiv:1701.04128): set the gradient of the
centre unit of a feature map to one (all its channels), back-propagate to the input and
look at the magnitude of the input gradient. Here the map is `|d out[..., centre] / d x|`
summed over the batch and the input channels and normalised to total mass 1; the radii are
the smallest distances from the map's centre of mass that hold a given fraction of the mass.

Pure PyTorch (no Hydra or Lightning): the CLI (`python -m analysis.erf`) and the training
callback (`engine.receptive_field`) both build on these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

FRACTIONS = (0.5, 0.9)


@dataclass
class EffectiveReceptiveField:
    """`weights`: `(*S)` input-sized map, non-negative, summing to 1; `layer`: the module whose
    centre output unit was used (`""`: the net's own output); `feature_shape`: its `(C, *S')`."""

    weights: Tensor
    layer: str
    feature_shape: tuple[int, ...]

    def centre_of_mass(self) -> Tensor:
        """`(D,)` position (in input pixels, row first) of the map's centre of mass."""
        grids = torch.meshgrid(*(torch.arange(size, dtype=self.weights.dtype) for size in self.weights.shape), indexing="ij")
        return torch.stack([(grid * self.weights).sum() for grid in grids])

    def radius(self, fraction: float) -> float:
        """Smallest distance `r` from the centre of mass such that the pixels whose centres lie
        within `r` hold at least `fraction` of the mass (0 for a single pixel)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"radius: fraction={fraction} must be in (0, 1]")
        grids = torch.meshgrid(*(torch.arange(size, dtype=self.weights.dtype) for size in self.weights.shape), indexing="ij")
        centre = self.centre_of_mass()
        distance = torch.sqrt(sum((grid - c) ** 2 for grid, c in zip(grids, centre))).flatten()
        order = torch.argsort(distance)
        mass = torch.cumsum(self.weights.flatten()[order], 0)
        # tolerate rounding of the cumulative sum at fraction 1
        index = int(torch.searchsorted(mass, torch.tensor(fraction, dtype=mass.dtype) - 1e-9))
        return float(distance[order][min(index, distance.numel() - 1)])

    def radii(self, fractions: tuple[float, ...] = FRACTIONS) -> dict[str, float]:
        """`{"r50": ..., "r90": ...}` for `fractions` (0.5, 0.9)."""
        return {f"r{round(100 * fraction)}": self.radius(fraction) for fraction in fractions}


def last_spatial_module(net: nn.Module, x: Tensor) -> str:
    """Name of the module that produces the last (in execution order) tensor shaped like a
    feature map of `x` (see `_is_feature_map`; `""` is the net itself, e.g. a segmentation
    net's output)."""
    found: list[str] = []
    hooks = [module.register_forward_hook(_recorder(name, x, found)) for name, module in net.named_modules()]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    if not found:
        raise ValueError(f"no module of the net returns a feature map (batch first, more than one position in the last {x.ndim - 2} dimensions) for inputs {tuple(x.shape)}")
    return found[-1]


def _recorder(name: str, x: Tensor, found: list):
    def record(module: nn.Module, inputs: object, output: object) -> None:
        if _is_feature_map(output, x):
            found.append(name)

    return record


def _is_feature_map(output: object, x: Tensor) -> bool:
    """`(B, C, ..., *S')`: the batch of `x`, its spatial rank in the last dimensions, more than
    one position there; dimensions in between (e.g. the submaps of a checkered net,
    `(B, C, submaps, H, W)`) are allowed."""
    spatial_rank = x.ndim - 2
    return (
        isinstance(output, Tensor) and output.ndim >= x.ndim and output.shape[0] == x.shape[0]
        and output.shape[-spatial_rank:].numel() > 1
    )  # fmt: skip


def effective_receptive_field(net: nn.Module, inputs: Tensor, layer: str | None = None) -> EffectiveReceptiveField:
    """The ERF of the centre unit of `layer`'s output (default: `last_spatial_module`): the
    centre position of its last (spatial) dimensions, in every channel (and submap).

    Args:
        net: any module mapping `(B, C, *S)` inputs to outputs; evaluated in eval mode
            (its mode is restored afterwards).
        inputs: `(B, C, *S)`; each sample contributes its input-gradient magnitude.
        layer: name of the module (as in `net.named_modules()`) whose output is the feature map.

    Raises:
        ValueError: unknown layer, a layer that returns no feature map, or a zero gradient.
    """
    was_training = net.training
    net.eval()
    try:
        name = last_spatial_module(net, inputs) if layer is None else layer
        modules = dict(net.named_modules())
        if name not in modules:
            raise ValueError(f"layer={name!r} is not a module of the net; e.g. {', '.join(list(modules)[1:6])}")
        captured: list[Tensor] = []
        hook = modules[name].register_forward_hook(lambda module, args, output: captured.append(output))
        x = inputs.detach().clone().requires_grad_()
        try:
            with torch.enable_grad():
                net(x)
        finally:
            hook.remove()
        feature = captured[-1] if captured else None
        if not _is_feature_map(feature, x):
            raise ValueError(f"layer={name!r} returns no feature map (batch first, more than one position in the last {x.ndim - 2} dimensions)")
        spatial_rank = x.ndim - 2  # the centre position of every channel (and submap)
        centre = (Ellipsis, *(size // 2 for size in feature.shape[-spatial_rank:]))
        (gradient,) = torch.autograd.grad(feature[centre].sum(), x)
    finally:
        net.train(was_training)
    weights = gradient.detach().abs().sum(dim=(0, 1)).double().cpu()
    total = weights.sum()
    if not total > 0:
        raise ValueError(f"the input gradient of the centre unit of {name or 'the output'} is zero: no receptive field to measure")
    return EffectiveReceptiveField(weights / total, name, tuple(feature.shape[1:]))
