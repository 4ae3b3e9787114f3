"""MNIST: 70,000 grey 28x28 digits, read from torchvision's layout `<root>/MNIST/raw/`."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from datasets.base import DataModule
from datasets.transforms import to_normalized_float

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


class MNISTDataModule(DataModule):
    """`(B, 1, 28, 28)` float images, integer labels 0-9."""

    name = "mnist"

    def fetch(self) -> None:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(self.root, train=train, download=True)

    def _read(self, train: bool) -> TensorDataset:
        from torchvision.datasets import MNIST

        try:
            raw = MNIST(self.root, train=train, download=False)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"MNIST not found: expected {self.root}/MNIST/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte. "
                "Set paths.data to the folder that holds MNIST/, or dataset.download=true to fetch it."
            ) from error
        self.check_classes(raw.targets, f"{self.root}/MNIST")
        return TensorDataset(raw.data.unsqueeze(1), raw.targets)

    def load_train(self) -> Dataset:
        return self._read(train=True)

    def load_test(self) -> Dataset:
        return self._read(train=False)

    def eval_transform(self):
        return to_normalized_float(MNIST_MEAN, MNIST_STD)
