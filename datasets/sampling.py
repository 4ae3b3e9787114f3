"""Reproducible, resumable sampling.

`EpochSampler` fixes the order of every epoch by `(seed, epoch)` alone, shards it across
distributed ranks, and can skip the part of an epoch that a checkpoint already consumed.
It yields `(index, sample_seed)` keys; `AugmentedDataset` seeds each sample's random
augmentation with `sample_seed` (torch's, Python's and NumPy's generators: timm's
transforms draw from all three), so a sample looks the same whatever the number of
workers, the rank or the point a run was resumed from.

`ResumableDataLoader` exposes `state_dict`/`load_state_dict` (saved with every checkpoint
and restored on resume by `engine.checkpointing.ResumeStateCheckpoint`), so an
interrupted epoch continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

SampleKey = tuple[int, int]


def _rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the order of one epoch; unlike `seed + epoch`, runs with neighbouring
    seeds do not share their epochs' orders."""
    return hash((seed, epoch)) & (2**63 - 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on the run seed, the epoch and the sample index."""
    return hash((seed, epoch, index)) & (2**63 - 1)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's (CPU), Python's and NumPy's global generators seeded by
    `seed`, and leave them as they were afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class EpochSampler(Sampler[SampleKey]):
    """Sampler whose order is a pure function of `(seed, epoch)`.

    Args:
        num_samples: size of the dataset it indexes.
        shuffle: draw a new permutation each epoch (else keep dataset order).
        seed: run seed; the permutation of epoch `e` is drawn from `epoch_seed(seed, e)`.

    Under `torch.distributed` each rank takes every `world_size`-th element of the order,
    padded by wrapping around so that all ranks see the same number of samples.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0) -> None:
        if num_samples <= 0:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got num_samples={num_samples}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # samples of this rank's share to skip once (set when resuming)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        _, world_size = _rank_and_world_size()
        return -(-self.num_samples // world_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[SampleKey]:
        rank, world_size = _rank_and_world_size()
        order = self._order()
        padded_size = len(self) * world_size
        if padded_size > self.num_samples:
            order = torch.cat([order, order[: padded_size - self.num_samples]])
        skip, self.skip = self.skip, 0
        for index in order[rank::world_size][skip:].tolist():
            yield index, sample_seed(self.seed, self.epoch, index)


class ResumableDataLoader(DataLoader):
    """A `DataLoader` over an `EpochSampler` that remembers its position in the epoch.

    After `load_state_dict(state)`, the next pass over the loader skips the batches that
    `state` records as consumed (the position is read at the first batch, so loading the
    state after `iter()` but before `next()` works too).
    """

    def __init__(self, dataset: Dataset, *, sampler: EpochSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, EpochSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochSampler, got {type(sampler).__name__}")
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._batches_consumed = 0
        self._resume_at = 0

    def __iter__(self) -> Iterator[Any]:
        self._batches_consumed, self._resume_at = self._resume_at, 0
        self.sampler.skip = self._batches_consumed * self.batch_size
        for batch in super().__iter__():
            self._batches_consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_consumed": self._batches_consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = state["batches_consumed"]


Sample = tuple[Any, Any]


class AugmentedDataset(Dataset):
    """Applies a joint `(input, target) -> (input, target)` transform to a base dataset.

    Keys may be plain indices or `(index, sample_seed)` pairs from `EpochSampler`; with a
    seed the transform runs under `seeded(sample_seed)`, which makes the augmentation a
    function of the seed and leaves the global generators untouched.
    """

    def __init__(self, base: Dataset, transform: Callable[[Any, Any], Sample] | None = None) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | SampleKey) -> Sample:
        index, seed = key if isinstance(key, tuple) else (key, None)
        inputs, target = self.base[index]
        if self.transform is None:
            return inputs, target
        if seed is None:
            return self.transform(inputs, target)
        with seeded(seed):
            return self.transform(inputs, target)
