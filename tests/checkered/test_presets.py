"""Every checkered preset composes and validates, holds its reference recipe and has a
command in experiments/checkered/ (which tests/framework/test_documented_commands.py
composes and validates, with every other documented command)."""

from __future__ import annotations

import pytest

from engine.cli import check_command_line, compose
from tests.conftest import REPO
from tests.documented import documented_commands

PRESETS = sorted(path.stem for path in (REPO / "cfg" / "experiment").glob("checkered_*.yaml"))
DOCUMENTS = ["experiments/checkered/README.md", "experiments/checkered/RESULTS.md"]
COMMANDS = documented_commands(*DOCUMENTS)


def test_the_presets_and_commands_are_found():
    assert {"checkered_mnist", "checkered_mnist_paper", "checkered_cifar", "checkered_cifar_noaug"} <= set(PRESETS)
    labels = " ".join(label for label, _ in COMMANDS)
    for preset in PRESETS:
        assert f"experiment={preset}" in labels, f"{preset} has no command in {DOCUMENTS}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_validates(preset):
    assert check_command_line([f"experiment={preset}"], multirun=False) == 1


def test_mnist_paper_preset_is_the_reference_schedule():
    cfg = compose(["experiment=checkered_mnist_paper"])
    assert cfg.net._target_ == "models.ccnn.ToyMNISTNet" and cfg.net.checkered and cfg.dataset.augment
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay) == (100, 16, 0.1, 0.0)
    assert cfg.scheduler._target_ == "engine.schedulers.multistep" and list(cfg.scheduler.milestones) == [50, 75]
    assert cfg.optimizer.nesterov and cfg.optimizer.momentum == 0.9 and cfg.dataset.val_fraction > 0


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_presets_differ_only_in_augmentation(dataset):
    with_augmentation = compose(["experiment=checkered_cifar", f"dataset={dataset}"])
    without = compose(["experiment=checkered_cifar_noaug", f"dataset={dataset}"])
    assert with_augmentation.dataset.augment and not without.dataset.augment
    without.dataset.augment = True
    del without.hydra, with_augmentation.hydra  # the hydra key records the preset's name
    assert without == with_augmentation
