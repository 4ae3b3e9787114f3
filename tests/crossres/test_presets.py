"""The cross-resolution presets compose to the paper's recipe and are shown in
experiments/crossres/ and experiments/flexconv/ (whose commands
tests/framework/test_documented_commands.py composes and validates)."""

from __future__ import annotations

import pytest

from engine.cli import check_command_line, compose
from tests.conftest import REPO
from tests.documented import documented_commands

DOCUMENTS = ["experiments/crossres/README.md", "experiments/crossres/RESULTS.md", "experiments/flexconv/README.md"]
COMMANDS = documented_commands(*DOCUMENTS)


def test_the_documents_show_the_cross_resolution_commands():
    labels = [label for label, _ in COMMANDS]
    assert any("experiment=crossres_flexnet7_cifar10" in label for label in labels)
    assert any("net=flexnet3" in label and "kernel.regularize.target=gabor+mask" in label for label in labels)


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
    assert (cfg.kernel.regularize.form, cfg.kernel.regularize.init, cfg.mask.crop) == ("max", "paper", "inside")


@pytest.mark.parametrize("target", ["gabor", "null"])
def test_cifar10_preset_rows_without_the_mask_term_or_regularisation(target):
    cfg = compose(["experiment=crossres_flexnet7_cifar10", f"kernel.regularize.target={target}"])
    assert cfg.kernel.regularize.target == (None if target == "null" else target)
    assert (cfg.cross_res.source_res, cfg.cross_res.target_res, cfg.train.epochs) == (16, 32, 100)
