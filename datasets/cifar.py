"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, 10 or 100 classes.

Reads the official "python version" pickles (`<root>/cifar-10-batches-py/`,
`<root>/cifar-100-python/`) and checks their structure, so a truncated or foreign file
fails with a message naming it. `download=true` fetches and verifies the official archive.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from datasets.base import DataModule
from datasets.transforms import cifar_augmentation, to_normalized_float

IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarRelease:
    """Where one CIFAR release keeps its files and how its pickles name the labels."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    url: str
    archive_md5: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarRelease(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = CifarRelease(
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def read_cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR pickle -> (uint8 images `(N, 3, 32, 32)`, int64 labels `(N,)`)."""
    try:
        with open(path, "rb") as file:
            batch = pickle.load(file, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, IndexError) as error:
        raise ValueError(f"corrupt CIFAR file {path}: cannot unpickle it ({error})") from error
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"corrupt CIFAR file {path}: expected a dict with 'data' and '{label_key}', found {found}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise ValueError(f"corrupt CIFAR file {path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {pixels})")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"corrupt CIFAR file {path}: {labels.shape[0]} labels for {data.shape[0]} images")
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


class CIFARDataModule(DataModule):
    """`(B, 3, 32, 32)` float images; integer labels. `release` picks CIFAR-10 or CIFAR-100."""

    def __init__(self, *, release: str = "cifar10", **kwargs) -> None:
        super().__init__(**kwargs)
        releases = {"cifar10": CIFAR10, "cifar100": CIFAR100}
        if release not in releases:
            raise ValueError(f"dataset.release={release!r} is not one of {sorted(releases)}")
        self.release = releases[release]
        self.name = release

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.release.folder

    def fetch(self) -> None:
        if self._missing_files():
            from torchvision.datasets.utils import download_and_extract_archive

            try:
                download_and_extract_archive(self.release.url, self.root, md5=self.release.archive_md5)
            except OSError as error:  # URLError and socket errors are OSErrors
                reason = getattr(error, "reason", None) or error
                raise ConnectionError(
                    f"dataset.download=true: cannot reach {urlparse(self.release.url).hostname} ({reason}); download "
                    f"{self.release.url} by hand and unpack it into {self.root}/ (it holds {self.release.folder}/)"
                ) from error

    def _missing_files(self) -> list[str]:
        names = self.release.train_files + self.release.test_files
        return [name for name in names if not (self.folder / name).is_file()]

    def _read(self, files: tuple[str, ...]) -> TensorDataset:
        missing = self._missing_files()
        if missing:
            raise FileNotFoundError(
                f"{self.release.title} not found: {self.folder} lacks {', '.join(missing)}. "
                f"Set paths.data to the folder that holds {self.release.folder}/, or dataset.download=true "
                f"to fetch it from {self.release.url}."
            )
        parts = [read_cifar_batch(self.folder / name, self.release.label_key) for name in files]
        images = torch.cat([images for images, _ in parts])
        labels = torch.cat([labels for _, labels in parts])
        self.check_classes(labels, str(self.folder))
        return TensorDataset(images, labels)

    def load_train(self) -> Dataset:
        return self._read(self.release.train_files)

    def load_test(self) -> Dataset:
        return self._read(self.release.test_files)

    def train_transform(self):
        from torchvision.transforms import v2

        return v2.Compose([cifar_augmentation(IMAGE_SHAPE[1]), self.eval_transform()])

    def eval_transform(self):
        return to_normalized_float(self.release.mean, self.release.std)
