"""The ConvNeXt-DCLS ImageNet recipe's pieces: timm's data pipeline (RandAugment, random
erasing, Mixup/CutMix), the EMA and the reference's repulsion loss, run end to end with
`debug=true` on a tiny net and a fabricated ImageNet folder."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from timm.data import Mixup

from datasets import DigitsDataModule
from engine.cli import choices_of, compose
from engine.dcls_repulsion import RepulsionFrom
from engine.experiment import build_experiment
from layers.dcls import dcls_conv
from layers.dcls.dcls_layer import repulsion
from models.convnext import ConvNeXt
from tests.conftest import QUICK
from tests.framework.fabricate import write_image_folder

TINY = ["net.depths=[1,1,1,1]", "net.dims=[8,16,32,64]", "net.kernel_size=3", "net.conv.dilated_kernel_size=5", "net.conv.kernel_count=4",
        "dataset.num_classes=3", "dataset.input_size=[32,32]", "dataset.val_fraction=0.25", "dataset.num_workers=0",
        "train.batch_size=4", "train.accumulate_grad_batches=1", "trainer=cpu", "trainer.devices=1"]  # fmt: skip


def tiny_convnext(net_repulsion: float, layer_repulsion: float = 0.0) -> ConvNeXt:
    conv = functools.partial(dcls_conv, version="v1", dilated_kernel_size=5, kernel_count=4, repulsion_factor=layer_repulsion)
    return ConvNeXt(num_classes=3, depths=[2, 1], dims=[8, 16], kernel_size=3, share_positions=True, repulsion_factor=net_repulsion, conv=conv)


class TrainingLosses(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics = dict(trainer.callback_metrics)


def test_the_recipe_runs_with_mixup_timm_transforms_ema_and_repulsion(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=8)
    cfg = compose(["experiment=dcls_convnext_t_imagenet", *QUICK, *TINY, "debug=true", f"paths.data={tmp_path}",
                   f"paths.runs={tmp_path / 'runs'}", "callbacks.dcls_repulsion.start_epoch=0"])  # fmt: skip
    losses = TrainingLosses()
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg), extra_callbacks=[losses])
    batch = next(iter(experiment.datamodule.train_dataloader()))
    assert batch[0].shape == (4, 3, 32, 32) and batch[1].shape == (4,)
    metrics = experiment.run()
    assert "test/acc" in metrics
    assert losses.metrics["train/aux_loss"] > 0  # the repulsion term was on
    best = torch.load(experiment.best_checkpoint.best_model_path, weights_only=True)
    assert "current_model_state" in best  # the average is the checkpoint's state_dict


def test_training_batches_are_mixed_into_class_probabilities_and_evaluation_batches_are_not():
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    datamodule = DigitsDataModule(root=".", batch_size=8, num_classes=10, in_channels=1, input_size=[8, 8], mixup=mixup)
    datamodule.trainer = type("Trainer", (), {"training": True})()
    inputs, labels = torch.randn(8, 1, 8, 8), torch.arange(8)
    mixed, targets = datamodule.on_after_batch_transfer((inputs.clone(), labels), 0)
    assert targets.shape == (8, 10) and torch.allclose(targets.sum(1), torch.ones(8))
    datamodule.trainer.training = False
    same, hard = datamodule.on_after_batch_transfer((inputs, labels), 0)
    assert same is inputs and hard is labels


def test_mixup_needs_an_even_batch():
    with pytest.raises(ValueError, match=r"dataset.batch_size=7 must be even with dataset.mixup"):
        DigitsDataModule(root=".", batch_size=7, num_classes=10, in_channels=1, input_size=[8, 8], mixup=Mixup(num_classes=10))


def test_the_repulsion_loss_is_the_squared_mean_over_position_sets_from_the_start_epoch():
    net = tiny_convnext(net_repulsion=2.0)
    positions = net.positions()
    assert len(positions) == 2  # shared by the blocks of each stage
    torch.testing.assert_close(net.auxiliary_loss(), 2.0 * ((repulsion(positions[0]) + repulsion(positions[1])) / 2) ** 2)
    switch = RepulsionFrom(start_epoch=21)
    for epoch, on in ((20, False), (21, True)):
        switch.on_train_epoch_start(type("Trainer", (), {"current_epoch": epoch})(), net)
        assert (net.auxiliary_loss() is not None) == on
    assert ConvNeXt(num_classes=3, depths=[1], dims=[8], repulsion_factor=1.0).auxiliary_loss() is None  # plain baseline: no term


def test_one_form_of_the_repulsion_loss_at_a_time():
    with pytest.raises(ValueError, match="net.repulsion_factor and net.conv.repulsion_factor are exclusive"):
        tiny_convnext(net_repulsion=1.0, layer_repulsion=0.5)
