"""ImageNet (ILSVRC-2012) from an ImageFolder tree: `<root>/imagenet/{train,val}/<class>/*`.

The official validation images serve as the test set (the test labels are not public);
model selection uses a split held out of the training images.

Training images are augmented either by torchvision's RandomResizedCrop and flip (the ResNet
recipe) or, with `timm_transform`, by timm's `create_transform` (RandAugment, colour jitter,
random erasing: the recipe of the DeiT/ConvNeXt training scripts, which call that function).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from datasets.base import DataModule
from datasets.transforms import OnInput

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic")


class ImageNetDataModule(DataModule):
    """`(B, 3, S, S)` float images with `S = input_size`; integer labels.

    Args:
        folder: sub-folder of `root` holding `train/` and `val/`.
        resize_ratio: evaluation resizes the short side to `S / resize_ratio`, then
            center-crops `S` (0.875 is the usual 256 -> 224).
        interpolation: `bilinear` or `bicubic`, for every resize (training crops included).
        timm_transform: keyword arguments of `timm.data.create_transform` for the training
            images (e.g. `auto_augment`, `color_jitter`, `re_prob`); None: RandomResizedCrop
            and horizontal flip. Input size, interpolation, mean and std are filled in.
    """

    name = "imagenet"

    def __init__(
        self,
        *,
        folder: str = "imagenet",
        resize_ratio: float = 0.875,
        interpolation: str = "bilinear",
        timm_transform: Mapping[str, Any] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < resize_ratio <= 1.0:
            raise ValueError(f"dataset.resize_ratio={resize_ratio} must be in (0, 1]")
        if len(self.input_size) != 2 or self.input_size[0] != self.input_size[1]:
            raise ValueError(f"dataset.input_size={list(self.input_size)} must be square [S, S] for ImageNet")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"dataset.interpolation={interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
        reserved = {"input_size", "is_training", "interpolation", "mean", "std"} & set(timm_transform or {})
        if reserved:
            raise ValueError(f"dataset.timm_transform.{sorted(reserved)[0]} is set by the datamodule; remove it")
        self.folder = Path(self.root) / folder
        self.resize_ratio = resize_ratio
        self.interpolation = interpolation
        self.timm_transform = dict(timm_transform) if timm_transform is not None else None

    def _split(self, split: str) -> Dataset:
        from torchvision.datasets import ImageFolder

        path = self.folder / split
        if not path.is_dir():
            raise FileNotFoundError(
                f"ImageNet split not found: {path} is not a folder. Expected {self.folder}/{{train,val}}/<class>/<image>; "
                "ImageNet cannot be downloaded automatically: get ILSVRC-2012 from https://image-net.org and "
                "arrange the validation images into class folders, then set paths.data."
            )
        dataset = ImageFolder(str(path))
        if len(dataset.classes) != self.num_classes:
            raise ValueError(
                f"{path} has {len(dataset.classes)} class folders but dataset.num_classes={self.num_classes}"
            )
        return dataset

    def load_train(self) -> Dataset:
        return self._split("train")

    def load_test(self) -> Dataset:
        return self._split("val")

    def _finish(self) -> v2.Transform:
        return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def train_transform(self):
        size = self.input_size[0]
        if self.timm_transform is not None:
            from timm.data import create_transform

            return OnInput(create_transform(size, is_training=True, interpolation=self.interpolation, mean=IMAGENET_MEAN,
                                            std=IMAGENET_STD, **self.timm_transform))  # fmt: skip
        mode = InterpolationMode(self.interpolation)
        return v2.Compose([v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip(), self._finish()])

    def eval_transform(self):
        size = self.input_size[0]
        mode = InterpolationMode(self.interpolation)
        return v2.Compose(
            [v2.Resize(int(size / self.resize_ratio), interpolation=mode, antialias=True), v2.CenterCrop(size), self._finish()]
        )
