"""convert_to_checkered on torchvision and framework nets; the CCNN models and conv=checkered."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tv

from engine.cli import compose
from engine.nets import build_net
from engine.profiling import count_macs
from layers import CheckeredConv2d, convert_to_checkered
from layers.checkered import CheckeredAdaptiveAvgPool2d, CheckeredConversion, CheckeredMaxPool2d
from models.ccnn import ToyMNISTNet


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


TORCHVISION = {
    "resnet18": (tv.resnet18, 32),
    "resnet50": (tv.resnet50, 32),
    "vgg11_bn": (tv.vgg11_bn, 32),
    "densenet121": (tv.densenet121, 32),
    "squeezenet1_1": (tv.squeezenet1_1, 48),
}


SLOW_TORCHVISION = {"resnet50", "vgg11_bn", "densenet121"}  # seconds just to initialise


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TORCHVISION else n for n in sorted(TORCHVISION)])
def test_torchvision_nets_convert_with_their_parameters(name):
    builder, size = TORCHVISION[name]
    torch.manual_seed(0)
    net = builder(weights=None, num_classes=5).eval()
    before, state_keys = count(net), set(net.state_dict())
    converted = convert_to_checkered(net, sampler="lattice")
    assert count(converted) == before
    assert set(converted.state_dict()) == state_keys
    assert not any(isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)) for m in converted.modules())
    assert converted(torch.randn(2, 3, size, size)).shape == (2, 5)


def test_tuple_pools_of_the_resnet_head_and_stem_convert():
    net = tv.resnet18(weights=None, num_classes=3)
    assert net.avgpool.output_size == (1, 1) and net.maxpool.padding == 1
    converted = convert_to_checkered(net)
    assert isinstance(converted.avgpool, CheckeredAdaptiveAvgPool2d) and isinstance(converted.maxpool, CheckeredMaxPool2d)


def test_weights_and_statistics_are_shared_not_copied():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    weight, running_mean = net[0].weight, net[1].running_mean
    converted = convert_to_checkered(net)
    assert converted.get_submodule("0").weight is weight and converted.get_submodule("1").running_mean is running_mean


def test_a_net_without_subsampling_computes_what_it_did():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(6, 6, 3, padding=1, groups=2),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(6, 4),
    ).eval()
    x = torch.randn(2, 3, 9, 9)
    expected = net(x)
    torch.testing.assert_close(convert_to_checkered(net)(x), expected)


def test_complete_multisampling_sees_every_pixel_once():
    """A 1x1 stride-2 conv with all four offsets, then the global average: the full-resolution average."""

    def make() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 3, 1, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    x = torch.randn(2, 2, 8, 6)
    reference = make()
    full = nn.functional.conv2d(x, reference[0].weight, reference[0].bias).mean((-2, -1))
    torch.testing.assert_close(convert_to_checkered(make(), sampler="complete")(x), full)
    assert not torch.allclose(convert_to_checkered(make(), sampler="naive")(x), full)  # two pixels of four


class Headed(nn.Module):
    """A forward with functional flatten and view, as in many CIFAR nets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def test_submaps_are_averaged_before_functional_views_and_linear_layers():
    net = Headed()
    x = torch.randn(2, 1, 8, 8)
    converted = convert_to_checkered(net)
    submaps = torch.relu(converted.conv(x))  # (2, 4, 2, 4, 4)
    torch.testing.assert_close(converted(x), converted.fc(submaps.mean(2).flatten(1)))


@pytest.mark.parametrize(
    "net, message",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 2)), r"cannot convert 1 \(ConvTranspose2d\)"),
        (nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3, stride=3))), r"cannot convert 0\.0 .*stride=\(3, 3\)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2)), r"cannot convert 1 \(Upsample\)"),
        (nn.Sequential(CheckeredConv2d(1, 2, 3)), "already checkered"),
    ],
)
def test_unconvertible_modules_are_named(net, message):
    with pytest.raises(ValueError, match=message):
        convert_to_checkered(net)


def test_bad_sampler_is_named():
    with pytest.raises(ValueError, match="conv.sampler: sampler='dense' is not one of"):
        CheckeredConversion(sampler="dense")


# --- the models and conv=checkered ---------------------------------------------------------------


def test_toy_mnist_ccnn_and_its_twin_have_the_published_sizes():
    ccnn, cnn = ToyMNISTNet(checkered=True), ToyMNISTNet(checkered=False)
    assert count(ccnn) == 93_833 and count(cnn) == 67_913
    x = torch.randn(2, 1, 28, 28)
    assert ccnn(x).shape == cnn(x).shape == (2, 10)
    converted = convert_to_checkered(cnn)
    assert count(converted) == 67_913 and converted(x).shape == (2, 10)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "net, params",
    [("resnet18_cifar", 11_220_132), pytest.param("resnet50_cifar", 23_705_252, marks=SLOW), ("resnet18_tiny", None),
     pytest.param("resnet50_tiny", None, marks=SLOW), ("densenet_bc40", None), pytest.param("vgg11_bn_cifar", None, marks=SLOW),
     pytest.param("wrn28_10", None, marks=SLOW)],
)  # fmt: skip
def test_cifar_nets_become_ccnns_with_conv_checkered(net, params):
    plain = build_net(compose([f"net={net}", "dataset=cifar100"]))
    cfg = compose([f"net={net}", "dataset=cifar100", "conv=checkered", "conv.sampler=lattice"])
    ccnn = build_net(cfg)
    assert count(ccnn) == count(plain)
    if params is not None:
        assert count(plain) == params
    assert any(isinstance(m, CheckeredConv2d) for m in ccnn.modules())
    if net in ("resnet18_tiny", "densenet_bc40"):  # the others: only sizes (their forward is a slow test)
        assert ccnn(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_macs_count_the_work_on_every_submap():
    cnn = ToyMNISTNet(checkered=False).eval()
    ccnn = convert_to_checkered(ToyMNISTNet(checkered=False)).eval()
    x = torch.zeros(1, 1, 28, 28)
    plain, checkered = count_macs(cnn, x), count_macs(ccnn, x)
    # After the stride-2 layer every convolution runs on two 14x14 submaps instead of one.
    after = 14 * 14 * 9 * (45 * 45 + 45 * 64)
    assert checkered - plain == after + 14 * 14 * 9 * 32 * 45  # + the second sample of the strided conv


def test_a_net_that_does_not_convert_is_told_which_do_and_what_to_do():
    with pytest.raises(ValueError) as error:
        build_net(compose(["net=boxenet", "dataset=cityscapes", "conv=checkered"]))
    message = str(error.value)
    assert "cannot convert down1.pool (MaxPool2d): it returns pooling indices" in message
    assert "these convert:" in message and "ResNet" in message and "conv=standard" in message
    assert "CheckeredMaxPool2d" not in message and "return_indices" not in message  # no internal layer
