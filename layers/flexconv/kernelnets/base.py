"""What every kernel network shares: the position-to-kernel interface and the output projection.

A kernel network maps relative positions `(P, D)` in `[-1, 1]^D` to the values of all
`out_channels = C_out * C_in` kernels at those positions, `(out_channels, P)` (channels
first, so the conv layer reshapes it to `(C_out, C_in, *K)` without a copy). One
evaluation serves every output/input channel pair: only the last projection is as wide
as the kernel.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class KernelNetFactory(Protocol):
    def __call__(self, dim: int, out_channels: int, init_extent: float = 1.0) -> "KernelNet":
        """Build a kernel network for `dim`-D positions with `out_channels` outputs.

        `init_extent` is the half-width of the region (in `[-1, 1]` units) the layer wants
        its kernel to start in (FlexConv: a bit more than its initial mask); networks with
        spatially localised units (MAGNet, Gabor) draw their centres from it, networks of
        global units (SIREN, Fourier, MLP) cover the whole grid regardless.
        """
        ...


class KernelNet(nn.Module):
    """Base class: `(P, D) -> (out_channels, P)`.

    Subclasses compute hidden features `(P, hidden_channels)` in `features` and inherit
    the output projection.
    """

    def __init__(self, dim: int, out_channels: int, hidden_channels: int) -> None:
        super().__init__()
        if dim < 1 or out_channels < 1 or hidden_channels < 1:
            raise ValueError(
                f"{type(self).__name__}: dim={dim}, out_channels={out_channels} and hidden_channels={hidden_channels} must be >= 1"
            )
        self.dim = dim
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.output = nn.Linear(hidden_channels, out_channels)

    def features(self, positions: Tensor) -> Tensor:
        """`(P, D) -> (P, hidden_channels)`."""
        raise NotImplementedError

    def forward(self, positions: Tensor, scale: Tensor | None = None) -> Tensor:
        """`(P, D) -> (out_channels, P)`, each position's kernel values times `scale` `(P,)` if given.

        The scale (a FlexConv mask, a sampling-rate normaliser) is folded into the output
        projection, `[W_out, b_out] @ [h * scale, scale]^T`, so the only pass over the
        `out_channels x P` kernel is one matrix product (forward and backward).
        """
        if positions.ndim != 2 or positions.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: positions of shape {tuple(positions.shape)} must be (P, {self.dim})")
        hidden = self.features(positions)
        if scale is None:
            return torch.addmm(self.output.bias.unsqueeze(1), self.output.weight, hidden.t())
        scaled = torch.cat([hidden * scale.unsqueeze(1), scale.unsqueeze(1)], dim=1)  # (P, H + 1)
        return torch.cat([self.output.weight, self.output.bias.unsqueeze(1)], dim=1) @ scaled.t()


def check_layers(name: str, num_layers: int, minimum: int) -> None:
    if num_layers < minimum:
        raise ValueError(f"{name}: num_layers={num_layers} must be >= {minimum}")
