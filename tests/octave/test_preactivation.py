"""Pre-activation (Oct-)ResNets, the nets of the octave paper's ImageNet ablation, and the
`experiment=octave_imagenet` recipe run end to end with `debug=true` on a tiny net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from layers.octave import OctaveTrunk
from models.oct_resnet import OctResNet
from models.resnet import ResNet
from tests.conftest import QUICK
from tests.framework.fabricate import write_image_folder

TINY = dict(in_channels=3, num_classes=5, block="bottleneck", layers=[1, 2], widths=[8, 16], stem="imagenet", zero_init_residual=False)


def test_pre_activation_blocks_normalise_before_every_convolution_and_add_last():
    net = ResNet(**TINY, pre_activation=True)
    first = net.stages[0][0]
    assert [type(m) for m in first.residual[:3]] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d] and isinstance(first.residual[-1], nn.Conv2d)
    assert [type(m) for m in first.shortcut] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d] and isinstance(first.activation, nn.Identity)
    assert [type(m) for m in net.head[:2]] == [nn.BatchNorm2d, nn.ReLU]
    post = ResNet(**TINY)
    assert isinstance(post.stages[0][0].activation, nn.ReLU) and isinstance(post.stages[0][0].residual[-1], nn.BatchNorm2d)


def test_the_octave_pre_activation_net_keeps_the_parameters_and_output():
    octave, plain = OctResNet(alpha=0.5, **TINY, pre_activation=True), ResNet(**TINY, pre_activation=True)
    assert isinstance(octave.stages, OctaveTrunk)
    assert sum(p.numel() for p in octave.parameters()) == sum(p.numel() for p in plain.parameters())
    assert octave(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_zero_initialised_residuals_need_post_activation_blocks():
    with pytest.raises(ValueError, match="net.zero_init_residual=true needs post-activation blocks"):
        ResNet(**{**TINY, "zero_init_residual": True}, pre_activation=True)


def test_the_imagenet_recipe_runs(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=8)
    cfg = compose(["experiment=octave_imagenet", *QUICK, "debug=true", f"paths.data={tmp_path}", f"paths.runs={tmp_path / 'runs'}",
                   "net.layers=[1,1,1,1]", "net.widths=[8,8,8,8]", "net.alpha=0.5", "dataset.num_classes=3",
                   "dataset.input_size=[32,32]", "dataset.val_fraction=0.25", "train.batch_size=4"])  # fmt: skip
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    assert experiment.task.net.stages.layers[0][0].residual[0].__class__.__name__ == "OctaveBatchNorm"  # pre-activation
    assert "test/acc" in experiment.run()
