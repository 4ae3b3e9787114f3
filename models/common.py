"""Small building blocks shared by the models."""

from __future__ import annotations

from torch import nn

_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def batch_norm(channels: int, dim: int = 2) -> nn.Module:
    return _BATCH_NORM[dim](channels)


def max_pool(kernel_size: int, dim: int = 2) -> nn.Module:
    return _MAX_POOL[dim](kernel_size)


def global_avg_pool(dim: int = 2) -> nn.Module:
    """`(B, C, *S) -> (B, C)`."""
    return nn.Sequential(_AVG_POOL[dim](1), nn.Flatten(1))


def spatial_rank(input_size: list[int] | tuple[int, ...], net: str) -> int:
    """1 for sequences `[L]`, 2 for images `[H, W]`; anything else is an error naming `net`."""
    if len(input_size) not in (1, 2):
        raise ValueError(f"{net}: input_size={list(input_size)} must be [length] or [height, width]")
    return len(input_size)
