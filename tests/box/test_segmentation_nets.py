"""ENet, ERFNet and their box-convolution variants: sizes, shapes, box-layer sizing, checks."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from engine.cli import compose
from layers.box import BoxConv2d
from models.enet import BoxENet, BoxOnlyENet, ENet, ENetMinus
from models.erfnet import BoxERFNet, ERFNet

NETS = {"enet": ENet, "boxenet": BoxENet, "boxonlyenet": BoxOnlyENet, "enet_minus": ENetMinus, "erfnet": ERFNet, "boxerfnet": BoxERFNet}
BOX_NETS = ["boxenet", "boxonlyenet", "boxerfnet"]

# Parameters of the authors' models (box-convolutions repo, examples/Cityscapes) with
# n_classes=19, i.e. 20 output channels.
REFERENCE_PARAMETERS = {
    "enet": 364_047,
    "boxenet": 249_895,
    "boxonlyenet": 131_551,
    "enet_minus": 205_911,
    "erfnet": 2_059_635,
    "boxerfnet": 1_042_131,
}

SMALL = (16, 32)  # the parameter count does not depend on input_size


def count_parameters(net: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


@pytest.mark.parametrize("name", NETS)
def test_parameter_count_matches_the_reference(name):
    net = NETS[name](3, 20, input_size=SMALL)
    assert count_parameters(net) == pytest.approx(REFERENCE_PARAMETERS[name], rel=0.01)


@pytest.mark.parametrize("name", NETS)
def test_output_is_per_pixel_logits(name):
    torch.manual_seed(0)
    net = NETS[name](3, 5, input_size=(64, 128))
    output = net(torch.randn(2, 3, 64, 128))
    assert output.shape == (2, 5, 64, 128)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", BOX_NETS)
def test_box_layers_are_sized_to_the_feature_maps_they_see(name):
    net = NETS[name](3, 4, input_size=(32, 64))
    seen: dict[BoxConv2d, tuple[int, int]] = {}
    for layer in net.modules():
        if isinstance(layer, BoxConv2d):
            layer.register_forward_pre_hook(lambda module, args: seen.__setitem__(module, tuple(args[0].shape[-2:])))
    net.eval()(torch.zeros(1, 3, 32, 64))
    assert seen and all((layer.max_input_h, layer.max_input_w) == size for layer, size in seen.items())


def test_boxenet_box_layers_follow_input_size_per_stage():
    net = BoxENet(3, 19, input_size=(64, 128))

    def box_sizes(stage: torch.nn.Module) -> set[tuple[int, int]]:
        return {(m.max_input_h, m.max_input_w) for m in stage.modules() if isinstance(m, BoxConv2d)}

    assert box_sizes(net.stage1) == box_sizes(net.stage4) == {(16, 32)}
    assert box_sizes(net.stage2) == box_sizes(net.stage3) == {(8, 16)}
    assert box_sizes(net.stage5) == {(32, 64)}
    assert sum(isinstance(m, BoxConv2d) for m in net.modules()) == 12


@pytest.mark.parametrize("name", NETS)
def test_sizes_not_divisible_by_8_are_rejected(name):
    with pytest.raises(ValueError, match="60"):
        NETS[name](3, 5, input_size=(60, 128))
    net = NETS[name](3, 5, input_size=SMALL)
    with pytest.raises(ValueError, match="36"):
        net(torch.zeros(1, 3, 16, 36))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_channels": 16}, "in_channels=16"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"input_size": (64,)}, r"input_size=\[64\]"),
        ({"dropout_scale": -1.0}, "dropout_scale=-1.0"),
        ({"dropout_scale": 5.0}, "dropout_scale=5.0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    arguments = {"in_channels": 3, "num_classes": 5, "input_size": SMALL} | kwargs
    with pytest.raises(ValueError, match=message):
        BoxENet(**arguments)


def test_dropout_scale_multiplies_every_rate():
    rates = [m.p for m in ENet(3, 5, SMALL, dropout_scale=2.0).modules() if isinstance(m, torch.nn.Dropout2d)]
    assert sorted(set(rates)) == [0.02, 0.2]
    assert all(m.p == 0 for m in ERFNet(3, 5, SMALL, dropout_scale=0.0).modules() if isinstance(m, torch.nn.Dropout2d))


@pytest.mark.parametrize("name", BOX_NETS)
def test_backward_reaches_the_box_coordinates(name):
    torch.manual_seed(0)
    net = NETS[name](3, 4, input_size=(32, 64))
    target = torch.randint(0, 4, (2, 32, 64))
    torch.nn.functional.cross_entropy(net(torch.randn(2, 3, 32, 64)), target).backward()
    boxes = [m for m in net.modules() if isinstance(m, BoxConv2d)]
    assert boxes
    for layer in boxes:
        gradients = torch.stack([p.grad for p in (layer.x_min, layer.x_max, layer.y_min, layer.y_max)])
        assert torch.isfinite(gradients).all() and gradients.abs().sum() > 0


@pytest.mark.parametrize("name", NETS)
def test_config_instantiates_the_net(name):
    cfg = compose([f"net={name}"])
    assert "conv" not in cfg.net
    net = instantiate(cfg.net)
    assert type(net) is NETS[name]
    dataset = cfg.dataset
    output = net.eval()(torch.zeros(1, dataset.in_channels, *dataset.input_size))
    assert output.shape == (1, dataset.num_classes, *dataset.input_size)
