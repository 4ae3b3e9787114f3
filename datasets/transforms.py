"""Transform builders shared by the datamodules (torchvision v2: they act jointly on
`(input, target)`, so one pipeline serves classification and segmentation)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torchvision.transforms import v2


def to_normalized_float(mean: Sequence[float], std: Sequence[float]) -> v2.Transform:
    """uint8 (or [0, 1] float) images -> float32 standardised by `mean`/`std`."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def cifar_augmentation(size: int) -> v2.Transform:
    """The standard CIFAR recipe: 4-pixel padded random crop and horizontal flip."""
    return v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()])


def mnist_augmentation(size: int, degrees: float = 15.0, shift: int = 2) -> v2.Transform:
    """Shift and rotation for digits (Sadigh & Sen, arXiv 1805.10766): a random rotation of up
    to `degrees` and a `shift`-pixel padded random crop."""
    return v2.Compose([v2.RandomRotation(degrees), v2.RandomCrop(size, padding=shift)])


class OnInput:
    """Joint transform from an input-only one (e.g. timm's or torchvision's v1 transforms):
    `(input, target) -> (transform(input), target)`."""

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, inputs: Any, target: Any) -> tuple[Any, Any]:
        return self.transform(inputs), target


class ThenOnInput:
    """Joint transform: `transform` (if any) on `(input, target)`, then `function` on the input only
    (e.g. image -> sequence, or a resize to another resolution)."""

    def __init__(self, transform: Optional[Callable[[Any, Any], tuple[Any, Any]]], function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.transform = transform
        self.function = function

    def __call__(self, inputs: Any, target: Any) -> tuple[torch.Tensor, Any]:
        if self.transform is not None:
            inputs, target = self.transform(inputs, target)
        return self.function(torch.as_tensor(inputs)), target
