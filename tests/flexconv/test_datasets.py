"""Sequence datasets (sMNIST, pMNIST, sCIFAR10, npCIFAR10) on files the tests write, and
sMNIST on the real MNIST when ../shared holds it."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from datasets import MNISTDataModule, SequentialCIFARDataModule, SequentialMNISTDataModule
from datasets.cifar import CIFAR10
from engine.cli import compose
from tests.framework.fabricate import write_cifar, write_mnist

COMMON = {"batch_size": 4, "num_workers": 0, "num_classes": 10, "augment": False}


def every_sample(datamodule, split):
    loader = getattr(datamodule, f"{split}_dataloader")()
    inputs, labels = zip(*loader)
    return torch.cat(inputs), torch.cat(labels)


def mnist_pair(root, **kwargs):
    images = MNISTDataModule(root=str(root), in_channels=1, input_size=[28, 28], **COMMON)
    sequences = SequentialMNISTDataModule(root=str(root), in_channels=1, input_size=[784], **COMMON, **kwargs)
    images.setup("fit"), sequences.setup("fit")
    return images, sequences


def test_smnist_is_the_scan_line_order_of_the_image(tmp_path):
    images, sequences = mnist_pair(write_mnist(tmp_path))
    for split in ("train", "val", "test"):
        image_batch, image_labels = every_sample(images, split)
        sequence_batch, sequence_labels = every_sample(sequences, split)
        assert sequence_batch.shape == (len(image_batch), 1, 784)
        torch.testing.assert_close(sequence_batch, image_batch.reshape(-1, 1, 784), rtol=0, atol=0)
        assert torch.equal(sequence_labels, image_labels)


def test_pmnist_uses_one_fixed_permutation_for_every_split(tmp_path):
    root = write_mnist(tmp_path)
    _, smnist = mnist_pair(root)
    _, pmnist = mnist_pair(root, permuted=True, permutation_seed=3)
    _, pmnist_again = mnist_pair(root, permuted=True, permutation_seed=3)
    _, other = mnist_pair(root, permuted=True, permutation_seed=4)
    permutation = pmnist.permutation
    assert sorted(permutation.tolist()) == list(range(784)) and not torch.equal(permutation, torch.arange(784))
    assert torch.equal(permutation, pmnist_again.permutation) and not torch.equal(permutation, other.permutation)
    for split in ("train", "val", "test"):  # the same permutation at training and test time
        plain, _ = every_sample(smnist, split)
        shuffled, _ = every_sample(pmnist, split)
        assert torch.equal(shuffled, plain[:, :, permutation])


def test_smnist_on_the_real_mnist(shared_mnist):
    datamodule = SequentialMNISTDataModule(root=str(shared_mnist), in_channels=1, input_size=[784], **COMMON)
    datamodule.setup("fit")
    sequences, labels = next(iter(datamodule.test_dataloader()))
    assert sequences.shape == (4, 1, 784) and labels.tolist() == [7, 2, 1, 0]  # the test set's first digits
    assert len(datamodule.train_set) + len(datamodule.val_set) == 60_000 and len(datamodule.test_set) == 10_000


def cifar_pair(root, **kwargs):
    images = SequentialCIFARDataModule(root=str(root), in_channels=3, input_size=[1024], **COMMON)
    images.setup("fit")
    sequences = SequentialCIFARDataModule(root=str(root), **COMMON, **kwargs)
    sequences.setup("fit")
    return images, sequences


def test_scifar10_and_npcifar10_shapes_and_content(tmp_path):
    root = write_cifar(tmp_path, CIFAR10)
    scifar, npcifar = cifar_pair(root, noise_padded=True, sequence_length=40, in_channels=96, input_size=[40])
    pixels, labels = every_sample(scifar, "test")
    rows, row_labels = every_sample(npcifar, "test")
    assert pixels.shape == (len(labels), 3, 1024) and rows.shape == (len(labels), 96, 40)
    assert torch.equal(labels, row_labels)
    image = pixels.reshape(-1, 3, 32, 32)
    # step t holds row t of every channel: channel c, column w at feature c * 32 + w
    torch.testing.assert_close(rows[:, :, :32], image.permute(0, 1, 3, 2).reshape(-1, 96, 32), rtol=0, atol=0)
    noise = rows[:, :, 32:]
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1
    again, _ = every_sample(npcifar, "test")
    assert torch.equal(again, rows)  # the noise of an evaluation sample is reproducible


def test_npcifar10_without_padding_is_the_rows(tmp_path):
    _, npcifar = cifar_pair(write_cifar(tmp_path, CIFAR10), noise_padded=True, sequence_length=32, in_channels=96, input_size=[32])
    rows, _ = every_sample(npcifar, "val")
    assert rows.shape[1:] == (96, 32)


@pytest.mark.parametrize(
    ("module", "kwargs", "message"),
    [
        (SequentialMNISTDataModule, {"in_channels": 1, "input_size": [28, 28]}, r"dataset.input_size=\[28, 28\] must be \[784\]"),
        (SequentialCIFARDataModule, {"in_channels": 3, "input_size": [32, 32]}, r"must be 3 and \[1024\] for sCIFAR10"),
        (SequentialCIFARDataModule, {"in_channels": 96, "input_size": [100], "noise_padded": True}, r"must be 96 and \[1000\] for npCIFAR10"),
        (SequentialCIFARDataModule, {"in_channels": 96, "input_size": [8], "noise_padded": True, "sequence_length": 8}, r"sequence_length=8 must be >= 32"),
    ],
)
def test_bad_shapes_fail_with_one_line(module, kwargs, message):
    with pytest.raises(ValueError, match=message):
        module(root="unused", **COMMON, **kwargs)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST not found"):
        mnist_pair(tmp_path)
    root = write_cifar(tmp_path, CIFAR10)
    (root / CIFAR10.folder / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"corrupt CIFAR file .*data_batch_2"):
        cifar_pair(root, in_channels=3, input_size=[1024])


@pytest.mark.parametrize(
    ("dataset", "shape"),
    [("smnist", (1, 784)), ("pmnist", (1, 784)), ("scifar10", (3, 1024)), ("npcifar10", (96, 1000))],
)
def test_configs_compose_to_the_documented_shapes(dataset, shape):
    cfg = compose([f"dataset={dataset}", "paths.data=unused"])
    assert (cfg.dataset.in_channels, *cfg.dataset.input_size) == shape
    datamodule = instantiate(cfg.dataset)
    assert datamodule.name == dataset
    if dataset == "pmnist":
        assert torch.equal(datamodule.permutation, instantiate(cfg.dataset).permutation)
