"""Every checkered preset composes and validates and has a command in experiments/checkered/
(which tests/framework/test_documented_commands.py composes and validates, with every other
documented command); tests/framework/test_paper_recipes.py checks their reference recipes."""

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


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_presets_differ_only_in_augmentation(dataset):
    with_augmentation = compose(["experiment=checkered_cifar", f"dataset={dataset}"])
    without = compose(["experiment=checkered_cifar_noaug", f"dataset={dataset}"])
    assert with_augmentation.dataset.augment and not without.dataset.augment
    without.dataset.augment = True
    del without.hydra, with_augmentation.hydra  # the hydra key records the preset's name
    assert without == with_augmentation
