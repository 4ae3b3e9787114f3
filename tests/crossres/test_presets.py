"""The cross-resolution presets compose to the paper's recipe, and every `run_crossres.py` /
`run_experiment.py` command shown in experiments/crossres/ and experiments/flexconv/ composes
and validates, so a renamed option breaks a test, not a reader."""

from __future__ import annotations

import re
import shlex

import pytest

from engine.cli import check_command_line, compose
from tests.conftest import REPO

DOCUMENTS = ["experiments/crossres/README.md", "experiments/crossres/RESULTS.md", "experiments/flexconv/README.md"]
COMMAND = re.compile(r"python\s+(?:run_crossres|run_experiment)\.py((?:[^`\n\\]|\\\n)*)")
PLACEHOLDER = re.compile(r"\S*<[^>]*>\S*")


def documented_commands() -> list[tuple[str, list[str]]]:
    """`(label, overrides)` of every command in DOCUMENTS; a placeholder `key=<...>` is left out
    (composition needs no data folder)."""
    commands = []
    for name in DOCUMENTS:
        for arguments in COMMAND.findall((REPO / name).read_text()):
            words = shlex.split(PLACEHOLDER.sub("", arguments.replace("\\\n", " ")))
            commands.append((f"{name}: {' '.join(words)}", words))
    return commands


COMMANDS = documented_commands()


def test_the_documents_show_the_cross_resolution_commands():
    labels = [label for label, _ in COMMANDS]
    assert any("experiment=crossres_flexnet7_cifar10" in label for label in labels)
    assert any("net=flexnet3" in label and "kernel.regularize.target=gabor+mask" in label for label in labels)


@pytest.mark.parametrize("words", [words for _, words in COMMANDS], ids=[label for label, _ in COMMANDS])
def test_documented_command_composes_and_validates(words):
    check_command_line(words, multirun=False)


def test_cifar10_preset_is_the_papers_table_4_recipe():
    cfg = compose(["experiment=crossres_flexnet7_cifar10"])
    assert cfg.net._target_ == "models.flexnet.FlexNet" and cfg.net.num_blocks == 7 and cfg.net.hidden_channels == 24
    assert cfg.conv._target_ == "layers.flexconv.flex_conv" and cfg.kernel.net._target_ == "layers.flexconv.MAGNet"
    assert cfg.dataset._target_ == "datasets.CIFARDataModule" and cfg.dataset.augment
    assert (cfg.cross_res.source_res, cfg.cross_res.target_res) == (16, 32)
    assert (cfg.train.epochs, cfg.cross_res.finetune_epochs, cfg.train.batch_size) == (100, 100, 64)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.scheduler.warmup_epochs, cfg.mask.lr_factor) == (0.01, 0.0, 5, 0.1)
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert (cfg.kernel.regularize.target, cfg.kernel.regularize.factor, cfg.kernel.regularize.gauss_stddevs) == ("gabor+mask", 0.1, 2.0)


@pytest.mark.parametrize("target", ["gabor", "null"])
def test_cifar10_preset_rows_without_the_mask_term_or_regularisation(target):
    cfg = compose(["experiment=crossres_flexnet7_cifar10", f"kernel.regularize.target={target}"])
    assert cfg.kernel.regularize.target == (None if target == "null" else target)
    assert (cfg.cross_res.source_res, cfg.cross_res.target_res, cfg.train.epochs) == (16, 32, 100)
