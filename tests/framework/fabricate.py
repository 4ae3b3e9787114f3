"""Small datasets written by the tests in the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from datasets.cifar import CIFAR10, CIFAR100, CifarRelease
from datasets.cityscapes import IMAGE_SUFFIX, LABEL_ID_TO_TRAIN_ID, LABEL_SUFFIX, PALETTE


def write_cifar(root: Path, release: CifarRelease = CIFAR10, images_per_file: int = 20, num_classes: int = 10, seed: int = 0) -> Path:
    """Pickled batches in the official layout; labels cycle through the classes."""
    rng = np.random.default_rng(seed)
    folder = root / release.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in release.train_files + release.test_files:
        batch = {
            "data": rng.integers(0, 256, size=(images_per_file, 3072), dtype=np.uint8),
            release.label_key: [i % num_classes for i in range(images_per_file)],
            "batch_label": name,
        }
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file)
    return root


def write_cifar100(root: Path, images_per_file: int = 200) -> Path:
    return write_cifar(root, CIFAR100, images_per_file, num_classes=100)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: tuple[int, int] = (40, 48)) -> Path:
    """`<root>/imagenet/{train,val}/<class>/<n>.png` with random RGB images."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(classes):
            folder = root / "imagenet" / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root

# Label ids the default label maps draw from: every evaluated class, plus "unlabeled" (0)
# and "parking" (9), which are ignored.
SAMPLED_LABEL_IDS = np.array([0, 7, 8, 9, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], dtype=np.uint8)

LabelMaker = Callable[[str, str, int], np.ndarray]


def random_blocks(size: tuple[int, int], block: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 `(H, W)` label ids, constant over `block x block` squares."""
    rows, cols = -(-size[0] // block), -(-size[1] // block)
    coarse = rng.choice(SAMPLED_LABEL_IDS, size=(rows, cols))
    return np.kron(coarse, np.ones((block, block), dtype=np.uint8))[: size[0], : size[1]]


def color_of_labels(label_ids: np.ndarray) -> np.ndarray:
    """uint8 `(H, W, 3)`: the palette colour of each pixel's train id, black where ignored."""
    colors = np.concatenate([PALETTE.numpy(), np.zeros((256 - len(PALETTE), 3), dtype=np.uint8)])
    return colors[LABEL_ID_TO_TRAIN_ID.numpy()[label_ids]]


def make_cityscapes_tree(
    root: Path,
    cities: Sequence[str] = ("aachen", "bremen"),
    images_per_city: int = 3,
    size: tuple[int, int] = (32, 64),
    splits: Sequence[str] = ("train", "val"),
    label_ids: LabelMaker | None = None,
    seed: int = 0,
) -> Path:
    """Write `<root>/cityscapes/{leftImg8bit,gtFine}/<split>/<city>/` PNGs; returns `<root>/cityscapes`.

    `label_ids(split, city, index)` gives each frame's uint8 `(H, W)` label ids (default:
    random 8 x 8 blocks). Every image pixel has the palette colour of its class (black where
    ignored), so a sample's mask can be recovered from its image.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cityscapes"
    for split in splits:
        for city in cities:
            (folder / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (folder / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            for index in range(images_per_city):
                labels = label_ids(split, city, index) if label_ids else random_blocks(size, 8, rng)
                frame = f"{city}_{index:06d}_000019"
                Image.fromarray(color_of_labels(labels)).save(folder / "leftImg8bit" / split / city / f"{frame}{IMAGE_SUFFIX}")
                Image.fromarray(labels).save(folder / "gtFine" / split / city / f"{frame}{LABEL_SUFFIX}")
    return folder


def write_mnist(root: Path, train_images: int = 40, test_images: int = 20, seed: int = 0) -> Path:
    """IDX files in torchvision's layout `<root>/MNIST/raw/`; labels cycle through 0-9."""
    rng = np.random.default_rng(seed)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train_images), ("t10k", test_images)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        header = bytes([0, 0, 8, 3]) + b"".join(size.to_bytes(4, "big") for size in images.shape)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + labels.tobytes())
    return root
