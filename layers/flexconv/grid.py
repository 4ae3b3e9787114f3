"""Sampling grids of continuous kernels: how many samples a kernel gets and where they lie.

A continuous kernel is defined on relative positions `[-1, 1]^D`; a layer samples it on
`N_d` equally spaced points per dimension (its grid), so one unit of position is
`(N_d - 1) / 2` input samples. The grid size follows the input (`horizon="same"`/`"full"`)
or is fixed (`horizon=<odd int>`).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

Horizon = Union[str, int]
HORIZONS = ("same", "full")


def check_horizon(horizon: Horizon, name: str) -> Horizon:
    """`same`, `full` or an odd positive int (a string of digits is accepted, as on the command line)."""
    if isinstance(horizon, str) and horizon.isdigit():
        horizon = int(horizon)
    if isinstance(horizon, bool) or not (horizon in HORIZONS or (isinstance(horizon, int) and horizon >= 1 and horizon % 2 == 1)):
        raise ValueError(f"{name}: horizon={horizon!r} must be 'same', 'full' or an odd kernel size >= 1")
    return horizon


def grid_size(horizon: Horizon, input_size: Sequence[int], causal: bool) -> tuple[int, ...]:
    """Samples per dimension of the kernel grid for an input of spatial size `input_size`.

    `same`: as long as the input (made odd when not causal, so the kernel has a centre);
    `full`: `2 S - 1`, so every output sees the whole input from any position;
    an int: that many samples in every dimension.
    """
    if isinstance(horizon, int):
        return (horizon,) * len(input_size)
    if horizon == "full":
        return tuple(2 * size - 1 for size in input_size)
    return tuple(size if causal else size | 1 for size in input_size)


def samples_per_unit(size: int) -> float:
    """Input samples per unit of relative position on a grid of `size` samples over `[-1, 1]`."""
    return (size - 1) / 2 if size > 1 else 1.0


class PositionGrid:
    """Caches the 1-D coordinates `linspace(-1, 1, N)` per size, device and dtype, and the
    `(P, D)` positions of each (cropped) grid built from slices of them: a crop that did not
    change is not rebuilt."""

    def __init__(self) -> None:
        self._axes: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}
        self._positions: dict[tuple, tuple[tuple[Tensor, ...], Tensor]] = {}

    def axis(self, size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """`(size,)` coordinates in `[-1, 1]` (a single sample sits at 0)."""
        key = (size, device, dtype)
        if key not in self._axes:
            self._axes[key] = torch.linspace(-1, 1, size, device=device, dtype=dtype) if size > 1 else torch.zeros(1, device=device, dtype=dtype)
        return self._axes[key]

    def positions(self, axes: Sequence[Tensor]) -> Tensor:
        """`(prod K_d, D)` positions of the grid spanned by 1-D coordinates `axes` (row-major, last dim fastest).

        Kept per set of axes (their memory, length and stride); the entry holds the axes, so that
        memory is never reused by other tensors while the entry exists."""
        if len(axes) == 1:
            return axes[0].unsqueeze(1)
        if torch.compiler.is_compiling() or any(axis.requires_grad for axis in axes):
            return _meshgrid(axes)
        key = tuple((axis.data_ptr(), axis.numel(), axis.stride(0), axis.dtype, axis.device, axis._version) for axis in axes)
        if key not in self._positions:
            self._positions[key] = (tuple(axes), _meshgrid(axes))
        return self._positions[key][1]


def _meshgrid(axes: Sequence[Tensor]) -> Tensor:
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))
