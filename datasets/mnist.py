"""MNIST: 70,000 grey 28x28 digits, read from torchvision's layout `<root>/MNIST/raw/`.

The IDX files are read and checked here (magic number, dimensions, file size), so a
truncated, empty or foreign file fails with a message naming it and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from datasets.base import DataModule
from datasets.transforms import mnist_augmentation, to_normalized_float

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SIZE = (28, 28)
_UNSIGNED_BYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with `ndim` dimensions (LeCun's MNIST format)."""
    data = path.read_bytes()
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"corrupt MNIST file {path}: {len(data)} bytes, shorter than the {header_size}-byte IDX header (empty or truncated)")
    if data[0] != 0 or data[1] != 0 or data[2] != _UNSIGNED_BYTE or data[3] != ndim:
        raise ValueError(
            f"corrupt MNIST file {path}: not an IDX file of {ndim}-D unsigned bytes "
            f"(magic number {data[:4].hex()}, expected 000008{ndim:02x})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"corrupt MNIST file {path}: {len(data):,} bytes, but its header announces shape {shape} = {expected:,} bytes (truncated or damaged)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


class MNISTDataModule(DataModule):
    """`(B, 1, 28, 28)` float images, integer labels 0-9."""

    name = "mnist"

    @property
    def folder(self) -> Path:
        return Path(self.root) / "MNIST" / "raw"

    def fetch(self) -> None:
        from torchvision.datasets import MNIST

        if not any((self.folder / name).is_file() for names in FILES.values() for name in names):
            try:
                for train in (True, False):
                    MNIST(self.root, train=train, download=True)
            except RuntimeError as error:  # torchvision tried every mirror
                hosts = ", ".join(dict.fromkeys(urlparse(mirror).hostname for mirror in MNIST.mirrors))
                reason = str(error).strip().splitlines()[-1].strip()  # the last mirror's answer
                raise ConnectionError(
                    f"dataset.download=true: cannot download MNIST from {hosts} ({reason}); put "
                    f"{', '.join(name for names in FILES.values() for name in names)} (or their .gz files) into {self.folder}/ by hand"
                ) from error

    def _read(self, train: bool) -> TensorDataset:
        images_file, labels_file = (self.folder / name for name in FILES[train])
        missing = [path.name for path in (images_file, labels_file) if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"MNIST not found: {self.folder}/ lacks {', '.join(missing)}. "
                "Set paths.data to the folder that holds MNIST/, or dataset.download=true to fetch it."
            )
        images, labels = read_idx(images_file, ndim=3), read_idx(labels_file, ndim=1)
        if images.shape[1:] != IMAGE_SIZE:
            raise ValueError(f"corrupt MNIST file {images_file}: images of {images.shape[1:]} pixels, expected {IMAGE_SIZE}")
        if len(labels) != len(images):
            raise ValueError(f"corrupt MNIST file {labels_file}: {len(labels):,} labels for the {len(images):,} images of {images_file.name}")
        targets = torch.from_numpy(labels.astype(np.int64))
        self.check_classes(targets, str(labels_file))
        return TensorDataset(torch.from_numpy(images.copy()).unsqueeze(1), targets)

    def load_train(self) -> Dataset:
        return self._read(train=True)

    def load_test(self) -> Dataset:
        return self._read(train=False)

    def train_transform(self):
        from torchvision.transforms import v2

        return v2.Compose([mnist_augmentation(IMAGE_SIZE[0]), self.eval_transform()])

    def eval_transform(self):
        return to_normalized_float(MNIST_MEAN, MNIST_STD)
