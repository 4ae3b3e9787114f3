"""Datamodules on data the tests write (CIFAR pickles, an ImageFolder tree) or that ships
(scikit-learn's digits, mnist1d's generator, the real MNIST in ../shared when present)."""

from __future__ import annotations

import pickle

import pytest
import torch

from datasets import CIFARDataModule, DigitsDataModule, ImageNetDataModule, MNIST1DDataModule, MNISTDataModule
from datasets.sampling import AugmentedDataset, EpochSampler, ResumableDataLoader
from tests.framework.fabricate import write_cifar, write_cifar100, write_image_folder

COMMON = {"batch_size": 8, "num_workers": 0}


def first_batch(datamodule, split="train"):
    datamodule.setup("fit")
    return next(iter(getattr(datamodule, f"{split}_dataloader")()))


def test_digits_splits_and_shapes():
    datamodule = DigitsDataModule(root="unused", num_classes=10, in_channels=1, input_size=[8, 8], **COMMON)
    images, labels = first_batch(datamodule)
    assert images.shape == (8, 1, 8, 8) and images.dtype == torch.float32
    assert -1.0 <= images.min() and images.max() <= 1.0
    sizes = [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)]
    assert sum(sizes) == 1797 and sizes[2] == round(0.2 * 1797)


@pytest.mark.parametrize(
    "in_channels, input_size",
    [(1, [16, 16]), (3, [8, 8]), (1, [64])],
)
def test_a_declared_shape_the_data_does_not_have_is_refused(in_channels, input_size):
    datamodule = DigitsDataModule(root="unused", num_classes=10, in_channels=in_channels, input_size=input_size, **COMMON)
    with pytest.raises(ValueError, match=rf"dataset.in_channels={in_channels}, dataset.input_size=\[.*\] do not match the digits data, whose training inputs are \[1, 8, 8\]"):
        datamodule.setup("fit")


def test_a_wrong_input_size_for_cifar_is_refused(tmp_path):
    write_cifar(tmp_path)
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[64, 64], **COMMON)
    with pytest.raises(ValueError, match=r"whose training inputs are \[3, 32, 32\]"):
        datamodule.setup("fit")


def test_validation_split_is_carved_from_training_and_disjoint_from_test():
    datamodule = DigitsDataModule(root="unused", num_classes=10, in_channels=1, input_size=[8, 8], val_fraction=0.25, **COMMON)
    datamodule.setup("fit")
    train_indices = set(datamodule.train_set.base.indices)
    val_indices = set(datamodule.val_set.base.indices)
    assert not train_indices & val_indices
    assert len(val_indices) == round(0.25 * (len(train_indices) + len(val_indices)))
    # the split indexes the training subset, which excludes the test images
    assert datamodule.train_set.base.dataset is datamodule.val_set.base.dataset


def test_mnist1d_is_generated_once_and_cached(tmp_path):
    arguments = {"root": str(tmp_path), "num_classes": 10, "in_channels": 1, "input_size": [40], **COMMON}
    sequences, labels = first_batch(MNIST1DDataModule(**arguments))
    assert sequences.shape == (8, 1, 40)
    cache = MNIST1DDataModule(**arguments).cache_file
    assert cache.is_file()
    again = MNIST1DDataModule(**arguments)
    again.setup("fit")
    assert len(again.train_set) + len(again.val_set) == 4000 and len(again.test_set) == 1000


def test_real_mnist_from_shared(shared_mnist):
    datamodule = MNISTDataModule(root=str(shared_mnist), num_classes=10, in_channels=1, input_size=[28, 28], **COMMON)
    images, labels = first_batch(datamodule)
    assert images.shape == (8, 1, 28, 28) and labels.max() < 10
    assert len(datamodule.train_set) + len(datamodule.val_set) == 60000 and len(datamodule.test_set) == 10000


def test_missing_mnist_says_where_the_files_go(tmp_path):
    datamodule = MNISTDataModule(root=str(tmp_path), num_classes=10, in_channels=1, input_size=[28, 28], **COMMON)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/MNIST/raw/.*dataset.download=true"):
        datamodule.setup("fit")


def test_cifar10_from_pickles_written_by_the_test(tmp_path):
    write_cifar(tmp_path)
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], **COMMON)
    images, labels = first_batch(datamodule)
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert len(datamodule.train_set) + len(datamodule.val_set) == 100 and len(datamodule.test_set) == 20
    # augmentation changes training images but not test images
    raw, _ = datamodule.test_set.base[0]
    test_image, _ = datamodule.test_set[0]
    mean = torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]
    std = torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None]
    torch.testing.assert_close(test_image, (raw.float() / 255 - mean) / std)


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    datamodule = CIFARDataModule(root=str(tmp_path), release="cifar100", num_classes=100, in_channels=3, input_size=[32, 32], **COMMON)
    datamodule.setup("fit")
    assert int(datamodule.test_set.base.tensors[1].max()) == 99


def test_missing_cifar_names_the_folder_and_the_fix(tmp_path):
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], **COMMON)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py lacks data_batch_1.*dataset.download=true"):
        datamodule.setup("fit")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x04garbage", "cannot unpickle"),
        (pickle.dumps({"data": [1, 2, 3]}), "expected a dict with 'data' and 'labels'"),
        (pickle.dumps({"data": torch.zeros(4, 10).numpy(), "labels": [0, 1, 2, 3]}), r"'data' is float32 \(4, 10\), expected uint8"),
    ],
)
def test_corrupt_cifar_file_is_named(tmp_path, content, message):
    write_cifar(tmp_path)
    corrupt = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    corrupt.write_bytes(content)
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], **COMMON)
    with pytest.raises(ValueError, match=f"corrupt CIFAR file {corrupt}: {message}"):
        datamodule.setup("fit")


def test_labels_outside_num_classes_are_rejected(tmp_path):
    write_cifar(tmp_path)
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=5, in_channels=3, input_size=[32, 32], **COMMON)
    with pytest.raises(ValueError, match=r"labels span \[0, 9\] but dataset.num_classes=5"):
        datamodule.setup("fit")


def test_imagenet_from_an_image_folder_tree(tmp_path):
    write_image_folder(tmp_path, classes=3)
    datamodule = ImageNetDataModule(root=str(tmp_path), num_classes=3, in_channels=3, input_size=[32, 32], val_fraction=0.2, **COMMON)
    images, labels = first_batch(datamodule)
    assert images.shape == (8, 3, 32, 32)
    assert len(datamodule.test_set) == 18  # the official validation images are the test set


def test_imagenet_class_count_mismatch_and_missing_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet/train is not a folder"):
        ImageNetDataModule(root=str(tmp_path), num_classes=3, in_channels=3, input_size=[32, 32], **COMMON).setup()
    write_image_folder(tmp_path, classes=3)
    with pytest.raises(ValueError, match="has 3 class folders but dataset.num_classes=1000"):
        ImageNetDataModule(root=str(tmp_path), num_classes=1000, in_channels=3, input_size=[32, 32], **COMMON).setup()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "dataset.batch_size=0"),
        ({"val_fraction": 0.0}, "dataset.val_fraction=0.0"),
        ({"input_size": [8, 8, 8]}, r"dataset.input_size=\[8, 8, 8\]"),
    ],
)
def test_datamodule_rejects_bad_arguments(kwargs, message):
    arguments = {"root": "unused", "num_classes": 10, "in_channels": 1, "input_size": [8, 8], **COMMON} | kwargs
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(**arguments)


# --- sampling -------------------------------------------------------------------------------------


def test_epoch_order_depends_on_seed_and_epoch_only():
    first, second = EpochSampler(50, shuffle=True, seed=3), EpochSampler(50, shuffle=True, seed=3)
    assert list(first) == list(second)
    first.set_epoch(1)
    assert list(first) != list(second)
    assert sorted(index for index, _ in first) == list(range(50))


def test_neighbouring_seeds_do_not_share_epoch_orders():
    seed_0 = EpochSampler(50, shuffle=True, seed=0)
    seed_1 = EpochSampler(50, shuffle=True, seed=1)
    seed_0.set_epoch(1)  # `seed + epoch` seeding gave this epoch seed 1's epoch 0
    assert [index for index, _ in seed_0] != [index for index, _ in seed_1]


def shares_of_ranks(num_samples: int, world_size: int, monkeypatch) -> list[list[int]]:
    shares = []
    for rank in range(world_size):
        monkeypatch.setattr("datasets.sampling._rank_and_world_size", lambda rank=rank: (rank, world_size))
        shares.append([index for index, _ in EpochSampler(num_samples, shuffle=True, seed=0)])
    return shares


def test_ranks_split_an_epoch(monkeypatch):
    shares = shares_of_ranks(12, 3, monkeypatch)
    assert sorted(sum(shares, [])) == list(range(12))  # a partition when the size divides evenly
    shares = shares_of_ranks(10, 3, monkeypatch)
    assert [len(share) for share in shares] == [4, 4, 4]  # padded by wrapping around
    assert set(sum(shares, [])) == set(range(10)) and len(sum(shares, [])) == 12


def test_resumable_loader_continues_mid_epoch():
    dataset = AugmentedDataset(torch.utils.data.TensorDataset(torch.arange(40), torch.zeros(40)))
    uninterrupted = [batch[0].tolist() for batch in ResumableDataLoader(dataset, sampler=EpochSampler(40, shuffle=True, seed=1), batch_size=4)]
    interrupted = ResumableDataLoader(dataset, sampler=EpochSampler(40, shuffle=True, seed=1), batch_size=4)
    iterator = iter(interrupted)
    seen = [next(iterator)[0].tolist() for _ in range(3)]
    state = interrupted.state_dict()
    resumed = ResumableDataLoader(dataset, sampler=EpochSampler(40, shuffle=True, seed=1), batch_size=4)
    resumed.load_state_dict(state)
    assert seen + [batch[0].tolist() for batch in resumed] == uninterrupted
    assert resumed.state_dict()["batches_consumed"] == 10
    assert [batch[0].tolist() for batch in resumed] == uninterrupted  # the next pass starts the epoch afresh


def test_augmentation_depends_on_the_sample_seed_not_on_the_worker(tmp_path):
    write_cifar(tmp_path)
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], **COMMON)
    datamodule.setup("fit")
    torch.manual_seed(0)
    first = datamodule.train_set[(0, 1234)][0]
    torch.manual_seed(99)
    second = datamodule.train_set[(0, 1234)][0]
    other_seed = datamodule.train_set[(0, 4321)][0]
    torch.testing.assert_close(first, second)
    assert not torch.equal(first, other_seed)

    def first_training_batch(workers: int) -> torch.Tensor:
        loader_datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], batch_size=8, num_workers=workers)
        return first_batch(loader_datamodule)[0]

    torch.testing.assert_close(first_training_batch(0), first_training_batch(2))
