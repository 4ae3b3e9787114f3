"""Every checkered preset composes and validates and holds its reference recipe, and every
`run_experiment.py` / `run_profiler.py` command in experiments/checkered/ composes and
validates (each job of a sweep included), so a renamed option breaks a test, not a reader."""

from __future__ import annotations

import re
import shlex

import pytest

from engine.cli import check_command_line, compose
from tests.conftest import REPO

PRESETS = sorted(path.stem for path in (REPO / "cfg" / "experiment").glob("checkered_*.yaml"))
DOCUMENTS = ["experiments/checkered/README.md", "experiments/checkered/RESULTS.md"]
COMMAND = re.compile(r"python\s+(?:run_experiment|run_profiler)\.py((?:[^`\n\\#]|\\\n)*)")
PLACEHOLDER = re.compile(r"\S*<[^>]*>\S*|\[net=cnn_mnist\]")


def documented_commands() -> list[tuple[str, list[str]]]:
    """`(label, overrides)` of every command in DOCUMENTS; a placeholder `key=<...>` or an
    optional `[...]` is left out (composition needs no data folder)."""
    commands = []
    for name in DOCUMENTS:
        for arguments in COMMAND.findall((REPO / name).read_text()):
            words = shlex.split(PLACEHOLDER.sub("", arguments.replace("\\\n", " ")))
            commands.append((f"{name}: {' '.join(words)}", words))
    return commands


COMMANDS = documented_commands()


def jobs(words: list[str]) -> int:
    """How many runs a command starts: the product of its comma-separated sweeps."""
    count = 1
    for word in words:
        if "=" in word and "[" not in word:
            count *= len(word.split("=", 1)[1].split(","))
    return count


def command_params():
    """One case per command; a sweep of more than 4 jobs composes each of them (about
    0.5 s apiece), so it is marked slow."""
    return [
        pytest.param(words, id=label, marks=[pytest.mark.slow] if jobs(words) > 4 else [])
        for label, words in COMMANDS
    ]


def test_the_presets_and_commands_are_found():
    assert {"checkered_mnist", "checkered_mnist_paper", "checkered_cifar", "checkered_cifar_noaug"} <= set(PRESETS)
    labels = " ".join(label for label, _ in COMMANDS)
    for preset in PRESETS:
        assert f"experiment={preset}" in labels, f"{preset} has no command in {DOCUMENTS}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_validates(preset):
    assert check_command_line([f"experiment={preset}"], multirun=False) == 1


@pytest.mark.parametrize("words", command_params())
def test_documented_command_composes_and_validates(words):
    multirun = "-m" in words or "--multirun" in words
    check_command_line([word for word in words if word not in ("-m", "--multirun")], multirun=multirun)


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
