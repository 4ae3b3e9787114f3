"""Small datasets written by the tests in the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.cifar import CIFAR10, CIFAR100, CifarRelease


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
