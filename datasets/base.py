"""The datamodule base shared by every dataset.

Subclasses say how to read their raw training and test sets and which transforms to use;
the base carves the validation split out of the training set (model selection never sees
the test set), builds reproducible, resumable loaders, mixes training batches when asked
(Mixup/CutMix) and checks its arguments.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.sampling import AugmentedDataset, EpochSampler, ResumableDataLoader

Transform = Callable[[Any, Any], tuple[Any, Any]]
# A batch mixer: images `(B, C, H, W)`, labels `(B,)` -> mixed images, class probabilities `(B, K)`
BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def split_indices(num_samples: int, holdout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split `range(num_samples)` into (kept, held-out) with a seeded permutation."""
    holdout = round(num_samples * holdout_fraction)
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[holdout:]), sorted(order[:holdout])


class DataModule(pl.LightningDataModule):
    """Base datamodule: validation split, loaders and argument checks.

    Args:
        root: folder holding the dataset (its layout is dataset-specific).
        batch_size: batch size of every loader.
        num_classes, in_channels, input_size: what the data is; checked against the
            files, and read by the nets' configs through interpolation.
        num_workers: loader worker processes.
        val_fraction: share of the training set held out for validation.
        split_seed: seed of that split (fixed, so changing `seed` keeps the split).
        seed: seed of the epoch order and of the augmentation.
        augment: use the dataset's training augmentation.
        download: fetch the files when they are missing (datasets that allow it).
        pin_memory: page-locked batches (with a GPU only).
        mixup: mixes every training batch once it is on the device (e.g. `timm.data.Mixup`:
            Mixup and CutMix), so the task sees class probabilities `(B, K)` as targets.
            The training loader then drops its last incomplete batch and `batch_size`
            must be even (pairs are mixed); validation and test batches are never mixed.
    """

    name: str = "dataset"

    def __init__(
        self,
        *,
        root: str,
        batch_size: int,
        num_classes: int,
        in_channels: int,
        input_size: Sequence[int],
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        augment: bool = True,
        download: bool = False,
        pin_memory: bool = False,
        mixup: BatchMixer | None = None,
    ) -> None:
        super().__init__()
        _check(batch_size >= 1, f"dataset.batch_size={batch_size} must be >= 1")
        _check(mixup is None or batch_size % 2 == 0, f"dataset.batch_size={batch_size} must be even with dataset.mixup (it mixes pairs)")
        _check(num_workers >= 0, f"dataset.num_workers={num_workers} must be >= 0")
        _check(0.0 < val_fraction < 1.0, f"dataset.val_fraction={val_fraction} must be in (0, 1)")
        _check(
            len(input_size) in (1, 2) and all(s >= 1 for s in input_size),
            f"dataset.input_size={list(input_size)} must be [length] or [height, width] of positive sizes",
        )
        self.root = str(root)
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = tuple(input_size)
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.seed = seed
        self.augment = augment
        self.download = download
        self.pin_memory = pin_memory
        self.mixup = mixup
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # --- what subclasses provide -------------------------------------------------------
    def load_train(self) -> Dataset:
        """The raw training set: `(input, target)` samples before any transform."""
        raise NotImplementedError

    def load_test(self) -> Dataset:
        """The raw test set."""
        raise NotImplementedError

    def train_transform(self) -> Transform | None:
        """Joint `(input, target)` transform for training samples."""
        return self.eval_transform()

    def eval_transform(self) -> Transform | None:
        """Joint transform for validation and test samples."""
        return None

    def fetch(self) -> None:
        """Download the files into `root` when they are missing (datasets that can)."""

    # --- Lightning hooks -----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Runs once per node, before `setup`: fetch the files if `download` is set."""
        if self.download:
            self.fetch()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full_train = self.load_train()
        kept, held_out = split_indices(len(full_train), self.val_fraction, self.split_seed)
        _check(
            len(kept) > 0 and len(held_out) > 0,
            f"dataset.val_fraction={self.val_fraction} leaves an empty split of {len(full_train)} samples",
        )
        train_transform = self.train_transform() if self.augment else self.eval_transform()
        self.train_set = AugmentedDataset(Subset(full_train, kept), train_transform)
        self.val_set = AugmentedDataset(Subset(full_train, held_out), self.eval_transform())
        self.test_set = AugmentedDataset(self.load_test(), self.eval_transform())
        self._check_sample_shape()

    def _check_sample_shape(self) -> None:
        """The nets are built from `in_channels` and `input_size`: check them against one
        training sample (drawn under its own seed, so the global RNG is untouched)."""
        shape = tuple(self.train_set[(0, 0)][0].shape)
        expected = (self.in_channels, *self.input_size)
        _check(
            shape == expected,
            f"dataset.in_channels={self.in_channels}, dataset.input_size={list(self.input_size)} do not match "
            f"the {self.name} data, whose training inputs are {list(shape)} (channels, *size)",
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        sampler = EpochSampler(len(self.train_set), shuffle=True, seed=self.seed)
        return ResumableDataLoader(self.train_set, sampler=sampler, drop_last=self.mixup is not None, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        assert self.test_set is not None, "call setup() first"
        return self._eval_loader(self.test_set)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches `(inputs, labels)` are mixed by `mixup` (if set) on the device."""
        if self.mixup is not None and self.trainer is not None and self.trainer.training:
            return self.mixup(*batch)
        return batch

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        sampler = EpochSampler(len(dataset), shuffle=False, seed=self.seed)
        return DataLoader(dataset, sampler=sampler, **self._loader_kwargs())

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),  # pinning helps only copies to a GPU
            "persistent_workers": self.num_workers > 0,
            # Worker seeds come from this generator, not the global RNG, so starting an
            # epoch draws nothing from the RNG that dropout uses (resumed runs stay exact).
            "generator": torch.Generator().manual_seed(self.seed),
        }

    def check_classes(self, targets: torch.Tensor, source: str) -> None:
        """Fail clearly when labels do not match the configured `num_classes`."""
        low, high = int(targets.min()), int(targets.max())
        _check(
            low >= 0 and high < self.num_classes,
            f"{source}: labels span [{low}, {high}] but dataset.num_classes={self.num_classes}",
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
