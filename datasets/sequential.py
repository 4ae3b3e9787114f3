"""Images read as sequences: the long-range sequence benchmarks of CKConv (Romero et al.,
arXiv 2102.02611) and FlexConv (arXiv 2110.08059).

- sMNIST: the 784 pixels of an MNIST digit in scan-line order, `(1, 784)`.
- pMNIST: the same pixels in one fixed random order, `(1, 784)`. The permutation is drawn
  once from `permutation_seed` and is the same for training, validation and test (the
  reference code drew a new one per split, which makes the task ill-posed).
- sCIFAR10: the 1,024 pixels of a CIFAR-10 image in scan-line order, `(3, 1024)`.
- npCIFAR10 (noise-padded CIFAR-10, Chang et al., arXiv 1902.09689): the image's 32 rows
  as 32 steps of 96 values (3 channels x 32 columns), `(96, 32)`, followed by Gaussian
  noise steps up to `sequence_length` (1,000 in the papers; 32 gives the rows alone).

The images are read, checked and standardised by the image datamodules; only the last
step (image -> sequence) is added here, so the files and errors are theirs.
"""

from __future__ import annotations

import torch

from datasets.cifar import IMAGE_SHAPE as CIFAR_SHAPE
from datasets.cifar import CIFARDataModule
from datasets.mnist import IMAGE_SIZE as MNIST_SIZE
from datasets.mnist import MNISTDataModule
from datasets.transforms import ThenOnInput


def fixed_permutation(length: int, seed: int) -> torch.Tensor:
    """A permutation of `range(length)` that depends on `seed` alone."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))


class SequentialMNISTDataModule(MNISTDataModule):
    """sMNIST / pMNIST: `(B, 1, 784)` float sequences, integer labels 0-9.

    Args:
        permuted: shuffle the time steps with one fixed permutation (pMNIST).
        permutation_seed: seed of that permutation.
    """

    def __init__(self, *, permuted: bool = False, permutation_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        length = MNIST_SIZE[0] * MNIST_SIZE[1]
        if self.input_size != (length,):
            raise ValueError(f"dataset.input_size={list(self.input_size)} must be [{length}] for sequential MNIST")
        self.name = "pmnist" if permuted else "smnist"
        self.permutation = fixed_permutation(length, permutation_seed) if permuted else None

    def _to_sequence(self, image: torch.Tensor) -> torch.Tensor:
        """`(1, 28, 28)` -> `(1, 784)`."""
        sequence = image.reshape(1, -1)
        return sequence if self.permutation is None else sequence[:, self.permutation]

    def train_transform(self):
        return ThenOnInput(super().train_transform(), self._to_sequence)

    def eval_transform(self):
        return ThenOnInput(super().eval_transform(), self._to_sequence)


class SequentialCIFARDataModule(CIFARDataModule):
    """sCIFAR10 `(B, 3, 1024)` or npCIFAR10 `(B, 96, sequence_length)`; integer labels 0-9.

    Args:
        noise_padded: rows as time steps (96 channels), padded with noise (npCIFAR10);
            else pixels as time steps (3 channels, sCIFAR10).
        sequence_length: total length of an npCIFAR10 sequence (>= 32); the steps after the
            32 rows are standard Gaussian noise, drawn afresh for every sample (seeded by
            the sampler, so a sample's noise is reproducible).
    """

    def __init__(self, *, noise_padded: bool = False, sequence_length: int = 1000, **kwargs) -> None:
        super().__init__(release="cifar10", **kwargs)
        channels, height, width = CIFAR_SHAPE
        if noise_padded and sequence_length < height:
            raise ValueError(f"dataset.sequence_length={sequence_length} must be >= {height} (the image's rows)")
        expected = ((channels * width, sequence_length) if noise_padded else (channels, height * width))
        if (self.in_channels, *self.input_size) != expected:
            raise ValueError(
                f"dataset.in_channels={self.in_channels}, dataset.input_size={list(self.input_size)} must be "
                f"{expected[0]} and [{expected[1]}] for {'npCIFAR10' if noise_padded else 'sCIFAR10'}"
            )
        self.noise_padded = noise_padded
        self.sequence_length = sequence_length
        self.name = "npcifar10" if noise_padded else "scifar10"

    def _to_sequence(self, image: torch.Tensor) -> torch.Tensor:
        """`(3, 32, 32)` -> `(3, 1024)` or `(96, sequence_length)`."""
        channels, height, width = image.shape
        if not self.noise_padded:
            return image.reshape(channels, height * width)
        rows = image.permute(0, 2, 1).reshape(channels * width, height)  # step t = row t of every channel
        noise = torch.randn(channels * width, self.sequence_length - height, dtype=rows.dtype)
        return torch.cat([rows, noise], dim=1)

    def train_transform(self):
        return ThenOnInput(super().train_transform(), self._to_sequence)

    def eval_transform(self):
        return ThenOnInput(super().eval_transform(), self._to_sequence)
