"""Transform builders shared by the datamodules (torchvision v2: they act jointly on
`(input, target)`, so one pipeline serves classification and segmentation)."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2


def to_normalized_float(mean: Sequence[float], std: Sequence[float]) -> v2.Transform:
    """uint8 (or [0, 1] float) images -> float32 standardised by `mean`/`std`."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def cifar_augmentation(size: int) -> v2.Transform:
    """The standard CIFAR recipe: 4-pixel padded random crop and horizontal flip."""
    return v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()])
