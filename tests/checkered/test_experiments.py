"""The checkered experiment configs and the conv=checkered family through the config system."""

from __future__ import annotations

import pytest

from engine.cli import compose
from engine.nets import build_net, is_model_conversion
from layers import CheckeredConv2d


def test_mnist_experiment_is_the_papers_net_with_its_augmentation():
    cfg = compose(["experiment=checkered_mnist"])
    assert cfg.net._target_ == "models.ccnn.ToyMNISTNet" and cfg.net.checkered
    assert cfg.dataset.augment and cfg.dataset.val_fraction > 0  # selection on validation, not test
    assert cfg.optimizer.nesterov and cfg.train.lr == 0.1


def test_cifar_experiment_converts_the_chosen_net():
    cfg = compose(["experiment=checkered_cifar", "net=resnet18_tiny", "dataset=cifar100", "dataset.augment=false", "conv.sampler=random"])
    assert is_model_conversion(cfg.conv) and cfg.conv.sampler == "random" and not cfg.dataset.augment
    assert list(cfg.scheduler.milestones) == [149, 224] and cfg.train.epochs == 300
    net = build_net(cfg)
    layers = [m for m in net.modules() if isinstance(m, CheckeredConv2d)]
    assert layers and all(layer.sampler.sampler == "random" for layer in layers)
    assert len({layer.sampler.seed for layer in layers if layer.stride == 2}) == sum(layer.stride == 2 for layer in layers)


def test_a_bad_sampler_in_the_config_is_named():
    with pytest.raises(Exception, match=r"conv.sampler: sampler='dense' is not one of"):
        build_net(compose(["net=cnn_mnist", "dataset=mnist", "conv=checkered", "conv.sampler=dense"]))
