"""scikit-learn's handwritten digits: 1,797 grey 8x8 images in 10 classes.

They ship with scikit-learn, so this dataset needs no download: it backs the default
experiment and the quick tests. A fixed 20% of the images form the test set.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from datasets.base import DataModule, split_indices

TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0  # fixed: the test set never changes between runs


class DigitsDataModule(DataModule):
    """`(B, 1, 8, 8)` float images in [-1, 1], integer labels 0-9."""

    name = "digits"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._all: TensorDataset | None = None
        self._train_indices: list[int] = []
        self._test_indices: list[int] = []

    def _load(self) -> TensorDataset:
        if self._all is None:
            from sklearn.datasets import load_digits

            digits = load_digits()
            images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
            labels = torch.as_tensor(digits.target, dtype=torch.long)
            self.check_classes(labels, "scikit-learn digits")
            self._all = TensorDataset(images, labels)
            self._train_indices, self._test_indices = split_indices(len(labels), TEST_FRACTION, TEST_SPLIT_SEED)
        return self._all

    def load_train(self) -> Dataset:
        return Subset(self._load(), self._train_indices)

    def load_test(self) -> Dataset:
        return Subset(self._load(), self._test_indices)
