"""The conv-family contract: per-convolution factories and whole-model conversions reach every
net through `engine.nets.build_net`, and layers can ask for their own optimiser options."""

from __future__ import annotations

import functools

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.config import ConfigError, validate
from engine.nets import build_net, is_model_conversion
from engine.tasks import ClassificationTask
from layers.factory import ModelConversion, standard_conv


class MarkConvolutions(ModelConversion):
    """A toy whole-model family: wraps every Conv2d so the test can see it was applied."""

    def __init__(self, scale: float = 2.0) -> None:
        self.scale = scale

    def __call__(self, model: nn.Module) -> nn.Module:
        model.converted_with = self.scale
        return model


class SpyFactory:
    """A toy per-convolution family recording what it was asked to build."""

    calls: list[tuple[int, int, int]] = []

    def __call__(self, in_channels, out_channels, kernel_size, **options):
        SpyFactory.calls.append((in_channels, out_channels, kernel_size))
        return standard_conv(in_channels, out_channels, kernel_size, **options)


def net_config(conv: dict) -> OmegaConf:
    return OmegaConf.create({
        "conv": conv,
        "net": {
            "_target_": "models.simple_cnn.SimpleCNN", "in_channels": 1, "num_classes": 3, "input_size": [8, 8],
            "widths": [4], "convs_per_stage": 1, "kernel_size": 3, "dropout": 0.0, "conv": "${conv}",
        },
    })  # fmt: skip


def test_model_conversion_is_applied_to_a_net_built_with_plain_convolutions():
    cfg = net_config({"_target_": f"{__name__}.MarkConvolutions", "scale": 3.0})
    assert is_model_conversion(cfg.conv)
    net = build_net(cfg)
    assert net.converted_with == 3.0
    assert all(type(m) is nn.Conv2d for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd))


def test_per_convolution_factory_is_called_for_every_convolution():
    SpyFactory.calls.clear()
    cfg = net_config({"_target_": f"{__name__}.SpyFactory"})
    assert not is_model_conversion(cfg.conv)
    build_net(cfg)
    assert SpyFactory.calls == [(1, 4, 3)]


def test_a_partial_factory_is_not_a_conversion():
    assert not is_model_conversion(OmegaConf.create({"_target_": "layers.factory.standard_conv", "_partial_": True}))


def test_whole_model_family_is_allowed_on_nets_without_a_conv_argument():
    cfg = OmegaConf.create({"net": {"_target_": "models.enet.ENet"}, "resume": None, "pretrained": None, "pretrained_wandb": None,
                            "conv": {"_target_": f"{__name__}.MarkConvolutions"}})  # fmt: skip
    validate(cfg, {"net": "enet", "conv": "mark"})
    cfg.conv = {"_target_": "layers.factory.standard_conv", "_partial_": True, "dilation": 2}
    with pytest.raises(ConfigError, match="conv=dilated has no effect on net=enet"):
        validate(cfg, {"net": "enet", "conv": "dilated"})


class Positions(nn.Module):
    """A layer whose `offset` wants 5x the learning rate and no weight decay."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 2))
        self.offset = nn.Parameter(torch.zeros(2, 2))
        self.bias = nn.Parameter(torch.zeros(2))

    def parameter_options(self) -> dict[str, dict[str, float]]:
        return {"offset": {"lr_factor": 5.0, "weight_decay": 0.0}}


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
def test_parameter_options_become_optimizer_groups(decay_norm_and_bias):
    layer = Positions()
    task = ClassificationTask(
        num_classes=2, net=nn.Sequential(layer), optimizer=functools.partial(torch.optim.AdamW, lr=0.1, weight_decay=0.01),
        decay_norm_and_bias=decay_norm_and_bias,
    )  # fmt: skip
    optimizer = task.configure_optimizers()
    by_parameter = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert by_parameter[id(layer.offset)]["lr"] == pytest.approx(0.5)
    assert by_parameter[id(layer.offset)]["weight_decay"] == 0.0
    assert by_parameter[id(layer.weight)]["lr"] == pytest.approx(0.1)
    assert by_parameter[id(layer.weight)]["weight_decay"] == 0.01
    assert by_parameter[id(layer.bias)]["weight_decay"] == (0.01 if decay_norm_and_bias else 0.0)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 3


class Bounded(nn.Module):
    """A layer whose `offset` must stay in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(3))

    def clamp_parameters(self) -> None:
        with torch.no_grad():
            self.offset.clamp_(-1, 1)


def test_constrained_parameters_are_clamped_after_every_optimiser_step():
    layer = Bounded()
    task = ClassificationTask(num_classes=2, net=nn.Sequential(layer), optimizer=functools.partial(torch.optim.SGD, lr=1.0))
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -5 * layer.offset.sum()
        loss.backward()
        return loss

    task.optimizer_step(0, 0, optimizer, closure)
    assert layer.offset.tolist() == [1.0, 1.0, 1.0]
