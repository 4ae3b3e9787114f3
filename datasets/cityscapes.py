"""Cityscapes (Cordts et al., CVPR 2016): street scenes with fine pixel labels in 19 classes.

Reads the official folder layout under `<root>/cityscapes/`:

    leftImg8bit/{train,val}/<city>/<frame>_leftImg8bit.png     RGB frames, 1024 x 2048
    gtFine/{train,val}/<city>/<frame>_gtFine_labelIds.png      label ids 0-33 per pixel

and maps the 34 label ids to the 19 evaluated classes ("train ids"), with 255 marking the
pixels that are ignored by the loss and the metrics. The official `train` split is the
training set, from which the base class holds out the validation split; the official `val`
split is the test set, since the labels of the official test split are not public.

Cityscapes cannot be downloaded automatically: the files require registering at
https://www.cityscapes-dataset.com.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import Cityscapes as _OfficialLabels
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from datasets.base import DataModule, split_indices
from datasets.caching import save_atomically
from datasets.imagenet import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 19
IGNORE_INDEX = 255
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
CLASS_WEIGHT_OFFSET = 1.1  # weights 1 / ln(offset + p_c); ENet used 1.02, the box-convolution authors 1.1
DOWNLOAD_HINT = (
    "Cityscapes cannot be downloaded automatically (it requires registration): get "
    "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com "
    "and unzip both into that folder."
)


def _evaluated_classes() -> list:
    """The official label definitions (as shipped by torchvision) of the 19 evaluated classes, by train id."""
    evaluated = [label for label in _OfficialLabels.classes if 0 <= label.train_id < IGNORE_INDEX]
    return sorted(evaluated, key=lambda label: label.train_id)


def _label_id_to_train_id_table() -> Tensor:
    """uint8 `(256,)`: entry `i` is the train id of label id `i`, 255 for ignored and unused ids."""
    table = torch.full((256,), IGNORE_INDEX, dtype=torch.uint8)
    for label in _evaluated_classes():
        table[label.id] = label.train_id
    return table


LABEL_ID_TO_TRAIN_ID = _label_id_to_train_id_table()
CLASS_NAMES: tuple[str, ...] = tuple(label.name for label in _evaluated_classes())
PALETTE = torch.tensor([label.color for label in _evaluated_classes()], dtype=torch.uint8)  # (19, 3) RGB


def find_frames(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """`(image, label)` file pairs of an official split, sorted by city and frame name."""
    image_folder, label_folder = folder / "leftImg8bit" / split, folder / "gtFine" / split
    for required in (image_folder, label_folder):
        if not required.is_dir():
            raise FileNotFoundError(
                f"Cityscapes not found: {required} is not a folder. Expected "
                f"{folder}/leftImg8bit/{{train,val}}/<city>/<frame>{IMAGE_SUFFIX} and "
                f"{folder}/gtFine/{{train,val}}/<city>/<frame>{LABEL_SUFFIX}; set paths.data to the folder "
                f"that holds {folder.name}/. {DOWNLOAD_HINT}"
            )
    images = sorted(image_folder.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise FileNotFoundError(f"Cityscapes split {split!r} is empty: no <city>/<frame>{IMAGE_SUFFIX} in {image_folder}. {DOWNLOAD_HINT}")
    frames = []
    for image in images:
        label = label_folder / image.parent.name / (image.name.removesuffix(IMAGE_SUFFIX) + LABEL_SUFFIX)
        if not label.is_file():
            raise ValueError(f"Cityscapes image {image} has no label file: expected {label}")
        frames.append((image, label))
    return frames


def _decode_png(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, SyntaxError) as error:  # PIL reports damaged files with both
        raise ValueError(f"corrupt or unreadable Cityscapes file {path}: {error}") from error


def read_image(path: Path) -> tv_tensors.Image:
    """An RGB frame as a uint8 image `(3, H, W)`."""
    return tv_tensors.Image(TF.pil_to_tensor(_decode_png(path).convert("RGB")))


def read_train_ids(path: Path) -> tv_tensors.Mask:
    """A `*_gtFine_labelIds.png` file as a uint8 mask `(H, W)` of train ids (255: ignore)."""
    labels = _decode_png(path)
    if labels.mode != "L":
        raise ValueError(f"{path} is a {labels.mode!r} image; a labelIds file is 8-bit single-channel ('L')")
    label_ids = TF.pil_to_tensor(labels)[0]
    return tv_tensors.Mask(LABEL_ID_TO_TRAIN_ID[label_ids.long()])


def count_class_pixels(label_files: Sequence[Path]) -> Tensor:
    """int64 `(19,)`: pixels of each class over `label_files` (ignored pixels are not counted)."""
    counts = torch.zeros(256, dtype=torch.int64)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PNG decoding releases the GIL
        for train_ids in pool.map(read_train_ids, label_files):
            counts += torch.bincount(train_ids.flatten(), minlength=256)
    return counts[:NUM_CLASSES]


def class_weights_from_counts(counts: Tensor) -> Tensor:
    """float32 `(K,)` weights `1 / ln(1.1 + p_c)`, `p_c` the share of class `c` among `counts` `(K,)`.

    Rare classes get up to `1 / ln(1.1) ~ 10.5`, the most frequent ones about 1.5.
    """
    frequencies = counts.double() / counts.sum().clamp(min=1)
    return (1.0 / torch.log(CLASS_WEIGHT_OFFSET + frequencies)).float()


def user_cache_folder() -> Path:
    """Where caches go when the dataset folder is read-only (`$XDG_CACHE_HOME/farconv`)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "farconv"


class CityscapesFrames(Dataset):
    """Samples `(image, mask)`: uint8 `tv_tensors.Image` `(3, H, W)`, uint8 `tv_tensors.Mask` `(H, W)` of train ids."""

    def __init__(self, frames: Sequence[tuple[Path, Path]]) -> None:
        self.frames = list(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self.frames[index]
        image, mask = read_image(image_path), read_train_ids(label_path)
        if image.shape[-2:] != mask.shape:
            raise ValueError(f"{image_path} is {tuple(image.shape[-2:])} but its labels {label_path} are {tuple(mask.shape)}")
        return image, mask


class CityscapesDataModule(DataModule):
    """Float images `(B, 3, H, W)` standardised with the ImageNet statistics; int64 masks `(B, H, W)`
    of train ids 0-18, 255 for pixels to ignore.

    Training samples are augmented jointly (image and mask; masks are always resampled with
    the nearest neighbour): horizontal flip, rotation and scaling about the centre, then a
    random `input_size` crop (padded with ignored pixels when the frame is smaller).

    Args:
        folder: sub-folder of `root` holding `leftImg8bit/` and `gtFine/`.
        train_resize: `[H, W]` every training frame is resized to before augmentation;
            `null` keeps the native 1024 x 2048. The box-convolution authors train on whole
            frames downscaled to `[512, 1024]` (with `input_size` `[512, 1024]`).
        eval_size: `[H, W]` validation and test frames (images and labels) are resized to;
            `null` evaluates at full resolution. `[512, 1024]` is the authors' evaluation.
        flip_probability: probability of a horizontal flip.
        max_rotation: rotations are drawn uniformly from `[-max_rotation, max_rotation]` degrees.
        max_scale_change: scale factors are drawn uniformly from `1 +- max_scale_change`.
        **kwargs: `DataModule` arguments; `num_classes` must be 19 and `in_channels` 3.

    `class_weights()` gives the loss weights `1 / ln(1.1 + p_c)`, `p_c` the frequency of
    class `c` among the labelled pixels of the training split (the validation hold-out
    excluded, so model selection stays independent of the loss), counted once at full
    resolution and cached in `<folder>/.farconv_cache/` (or `$XDG_CACHE_HOME/farconv/cityscapes/` when
    the dataset folder is read-only).
    """

    name = "cityscapes"
    class_names = CLASS_NAMES
    palette = PALETTE

    def __init__(
        self,
        *,
        folder: str = "cityscapes",
        train_resize: Sequence[int] | None = None,
        eval_size: Sequence[int] | None = None,
        flip_probability: float = 0.5,
        max_rotation: float = 7.5,
        max_scale_change: float = 0.12,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"dataset.num_classes={self.num_classes} must be {NUM_CLASSES}: Cityscapes evaluates 19 classes")
        if self.in_channels != 3:
            raise ValueError(f"dataset.in_channels={self.in_channels} must be 3: Cityscapes frames are RGB")
        _check_size("input_size", self.input_size)
        _check_size("train_resize", train_resize)
        _check_size("eval_size", eval_size)
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"dataset.flip_probability={flip_probability} must be in [0, 1]")
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(f"dataset.max_rotation={max_rotation} must be in [0, 180] degrees")
        if not 0.0 <= max_scale_change < 1.0:
            raise ValueError(f"dataset.max_scale_change={max_scale_change} must be in [0, 1)")
        self.folder = Path(self.root) / folder
        self.train_resize = list(train_resize) if train_resize is not None else None
        self.eval_size = list(eval_size) if eval_size is not None else None
        self.flip_probability = flip_probability
        self.max_rotation = max_rotation
        self.max_scale_change = max_scale_change
        self._class_weights: Tensor | None = None

    def load_train(self) -> Dataset:
        return CityscapesFrames(find_frames(self.folder, "train"))

    def load_test(self) -> Dataset:
        return CityscapesFrames(find_frames(self.folder, "val"))

    # --- transforms ----------------------------------------------------------------------
    def _to_normalized_tensors(self) -> v2.Transform:
        return v2.Compose(
            [
                v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def train_transform(self) -> v2.Transform:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        resize = [v2.Resize(self.train_resize, antialias=True)] if self.train_resize else []
        return v2.Compose(
            [
                *resize,
                v2.RandomHorizontalFlip(self.flip_probability),
                v2.RandomAffine(
                    degrees=self.max_rotation,
                    scale=(1.0 - self.max_scale_change, 1.0 + self.max_scale_change),
                    interpolation=v2.InterpolationMode.BILINEAR,
                    fill=fill,
                ),
                v2.RandomCrop(self.input_size, pad_if_needed=True, fill=fill),
                self._to_normalized_tensors(),
            ]
        )

    def eval_transform(self) -> v2.Transform:
        resize = [v2.Resize(self.eval_size, antialias=True)] if self.eval_size else []
        return v2.Compose([*resize, self._to_normalized_tensors()])

    # --- class weights -------------------------------------------------------------------
    def training_label_files(self) -> list[Path]:
        """The label files of the training split, i.e. the official `train` split minus the validation hold-out."""
        frames = find_frames(self.folder, "train")
        kept, _ = split_indices(len(frames), self.val_fraction, self.split_seed)
        return [frames[index][1] for index in kept]

    def class_weights(self) -> Tensor:
        """float32 `(19,)` loss weights `1 / ln(1.1 + p_c)` over the training split (see the class docstring)."""
        if self._class_weights is None:
            self._class_weights = class_weights_from_counts(self._class_pixel_counts())
        return self._class_weights

    def _class_pixel_counts(self) -> Tensor:
        label_files = self.training_label_files()
        listing = "\n".join(path.relative_to(self.folder).as_posix() for path in label_files)
        name = f"class_pixels_{hashlib.sha256(listing.encode()).hexdigest()[:16]}.pt"
        cache_folders = [self.folder / ".farconv_cache", user_cache_folder() / "cityscapes"]
        for cache_folder in cache_folders:
            counts = _read_counts(cache_folder / name)
            if counts is not None:
                return counts
        counts = count_class_pixels(label_files)
        for cache_folder in cache_folders:
            if _write_atomically(counts, cache_folder / name):
                return counts
        warnings.warn(f"cannot cache the Cityscapes class frequencies in any of {[str(f) for f in cache_folders]}")
        return counts


def _read_counts(path: Path) -> Tensor | None:
    """Cached class pixel counts, or None when the file is missing or unusable (then they are recounted)."""
    try:
        counts = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):  # missing, unreadable or damaged
        return None
    return counts if isinstance(counts, Tensor) and counts.shape == (NUM_CLASSES,) else None


def _write_atomically(counts: Tensor, path: Path) -> bool:
    """Save `counts` (see `save_atomically`); False when the folder is not writable."""
    try:
        save_atomically(counts, path)
    except OSError:
        return False
    return True


def _check_size(key: str, size: Sequence[int] | None) -> None:
    if size is not None and (len(size) != 2 or not all(side >= 1 for side in size)):
        raise ValueError(f"dataset.{key}={list(size)} must be [height, width] of positive sizes")
