"""MNIST-1D (Greydanus & Kobak, 2020): 1-D sequences of length 40 in 10 classes.

Generated locally by the `mnist1d` package with its published settings (5,000 samples,
seed 42: 4,000 train and 1,000 test), so no download is needed; the generated arrays
are cached under `<root>/mnist1d/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from datasets.base import DataModule
from datasets.caching import save_atomically


class MNIST1DDataModule(DataModule):
    """`(B, 1, 40)` float sequences, integer labels 0-9.

    Args:
        num_samples: samples generated in total (80% train, 20% test).
        generator_seed: seed of the generator (42 reproduces the published dataset).
    """

    name = "mnist1d"

    def __init__(self, *, num_samples: int = 5000, generator_seed: int = 42, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_samples < 10:
            raise ValueError(f"dataset.num_samples={num_samples} must be >= 10")
        self.num_samples = num_samples
        self.generator_seed = generator_seed
        self._arrays: dict[str, torch.Tensor] | None = None

    @property
    def cache_file(self) -> Path:
        return Path(self.root) / "mnist1d" / f"mnist1d_n{self.num_samples}_seed{self.generator_seed}.pt"

    def _load(self) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            if self.cache_file.exists():
                self._arrays = torch.load(self.cache_file, weights_only=True)
            else:
                self._arrays = self._generate()
                save_atomically(self._arrays, self.cache_file)
            self.check_classes(self._arrays["y"], str(self.cache_file))
        return self._arrays

    def _generate(self) -> dict[str, torch.Tensor]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = self.num_samples
        args.seed = self.generator_seed
        data = make_dataset(args)
        return {
            "x": torch.as_tensor(data["x"], dtype=torch.float32).unsqueeze(1),
            "y": torch.as_tensor(data["y"], dtype=torch.long),
            "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32).unsqueeze(1),
            "y_test": torch.as_tensor(data["y_test"], dtype=torch.long),
        }

    def load_train(self) -> Dataset:
        arrays = self._load()
        return TensorDataset(arrays["x"], arrays["y"])

    def load_test(self) -> Dataset:
        arrays = self._load()
        return TensorDataset(arrays["x_test"], arrays["y_test"])
