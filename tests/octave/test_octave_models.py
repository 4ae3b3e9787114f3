"""Octave helpers, `convert_to_octave`, the Oct-ResNets (layout of the official code, MACs of the
paper's supplement) and the `conv=octave` / `net=oct_resnet*` configs."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.cli import compose
from engine.nets import build_net
from engine.profiling import count_macs
from layers.octave import (
    OctaveBatchNorm,
    OctaveConv,
    OctaveConvBNAct,
    OctaveConversion,
    OctaveTrunk,
    convert_to_octave,
    octave_add,
    octave_merge,
)
from models import VGG, DenseNetBC, SimpleCNN, ToyMNISTNet, WideResNet
from models.oct_resnet import OctResNet
from models.resnet import ResNet

RESNET50 = dict(in_channels=3, num_classes=1000, block="bottleneck", layers=[3, 4, 6, 3], widths=[64, 128, 256, 512], stem="imagenet")
SMALL_BOTTLENECK = dict(in_channels=3, num_classes=10, block="bottleneck", layers=[1, 1, 1, 1], widths=[8, 16, 16, 32], stem="imagenet")


def test_batch_norm_from_a_plain_norm_normalises_each_part_as_the_plain_one():
    plain = nn.BatchNorm2d(8)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2)
        plain.bias.uniform_(-1, 1)
        plain.running_mean.uniform_(-1, 1)
        plain.running_var.uniform_(0.5, 2)
    plain.eval()
    octave = OctaveBatchNorm.from_norm(plain, 0.25).eval()
    x = torch.randn(2, 8, 4, 4)
    y_h, y_l = octave((x[:, :6], x[:, 6:]))
    torch.testing.assert_close(torch.cat([y_h, y_l], 1), plain(x))


def test_pair_helpers():
    first = (torch.ones(1, 2, 4, 4), torch.ones(1, 1, 2, 2))
    total = octave_add(first, first)
    assert torch.all(total[0] == 2) and torch.all(total[1] == 2)
    with pytest.raises(ValueError, match="different alphas"):
        octave_add(first, (first[0], None))
    merged = octave_merge((torch.zeros(1, 2, 3, 3), torch.ones(1, 1, 2, 2)))
    assert merged.shape == (1, 3, 3, 3) and torch.all(merged[:, 2] == 1)
    block = OctaveConvBNAct(4, 8, 3, 0.0, 0.5, padding=1, stride=2)
    y_h, y_l = block(torch.randn(2, 4, 9, 9))
    assert y_h.shape == (2, 4, 5, 5) and y_l.shape == (2, 4, 3, 3) and y_h.min() >= 0


def test_converting_a_sequential_at_alpha_zero_changes_nothing():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                          nn.ReLU(), nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(1)).eval()  # fmt: skip
    x = torch.randn(2, 3, 11, 13)
    expected = plain(x)
    octave = convert_to_octave(plain, 0.0)
    torch.testing.assert_close(octave(x), expected)


def test_converting_a_sequential_places_first_and_last_octave_layers():
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    octave = convert_to_octave(plain, 0.5)
    convs = [m for m in octave.modules() if isinstance(m, OctaveConv)]
    assert [(c.alpha_in, c.alpha_out) for c in convs] == [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0)]
    assert octave(torch.randn(1, 3, 9, 9)).shape == (1, 4, 9, 9)
    # the plain weights were split, not redrawn: high->high is the top-left block
    torch.testing.assert_close(convs[1].weight_hh, plain[2].weight[:4, :4])
    torch.testing.assert_close(convs[1].weight_lh, plain[2].weight[:4, 4:])


def test_convert_rejects_unknown_models_and_bad_alpha():
    with pytest.raises(ValueError, match="no octave conversion for Linear"):
        convert_to_octave(nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match=r"alpha=1.0 is not in \[0, 1\)"):
        convert_to_octave(ResNet(3, 10), 1.0)
    with pytest.raises(ValueError, match="one alpha per stage"):
        convert_to_octave(ResNet(3, 10), 0.5, [0.5, 0.5])
    with pytest.raises(ValueError, match="already octave"):
        convert_to_octave(OctResNet(0.5, in_channels=3, num_classes=10), 0.5)


# Small versions of the framework's plain nets that convert, with an input each (odd sizes where the net allows).
CONVERTIBLE = {
    "simple_cnn": (lambda: SimpleCNN(1, 10, [28, 28], widths=[8, 16]), (2, 1, 29, 27)),
    "vgg": (lambda: VGG(3, 10, stages=[16, "M", 16, "M", 32, "M", 32, "M", 32, "M"], hidden=16), (2, 3, 32, 32)),
    "cnn_mnist": (lambda: ToyMNISTNet(1, 10, checkered=False), (2, 1, 28, 28)),
    "resnet_cifar": (lambda: ResNet(3, 10, layers=[1, 1, 1]), (2, 3, 33, 33)),
    "resnet_imagenet": (lambda: ResNet(**SMALL_BOTTLENECK), (2, 3, 64, 64)),
    "wide_resnet": (lambda: WideResNet(3, 10, depth=10, widen_factor=2), (2, 3, 32, 32)),
    "wide_resnet_k1": (lambda: WideResNet(3, 10, depth=10, widen_factor=1), (2, 3, 31, 31)),
}


@pytest.mark.parametrize("name", sorted(CONVERTIBLE))
def test_plain_nets_convert_with_their_shapes_and_parameters_and_fewer_macs(name):
    build, shape = CONVERTIBLE[name]
    torch.manual_seed(0)
    plain, x = build().eval(), torch.randn(shape)
    plain_output, plain_parameters, plain_macs = plain(x), sum(p.numel() for p in plain.parameters()), count_macs(plain, x)
    octave = convert_to_octave(plain, 0.5)
    assert sum(isinstance(m, OctaveConv) for m in octave.modules()) > 1
    output = octave(x)
    assert output.shape == plain_output.shape
    assert sum(p.numel() for p in octave.parameters()) == plain_parameters
    assert count_macs(octave, x) < 0.8 * plain_macs
    output.sum().backward()
    assert all(p.grad is not None for p in octave.parameters())
    with pytest.raises(ValueError, match="is already octave"):
        convert_to_octave(octave, 0.5)


@pytest.mark.parametrize(
    "net, dataset",
    [("simple_cnn", "mnist"), ("cnn_mnist", "mnist"), ("vgg11_bn_cifar", "cifar10"), ("resnet18_cifar", "cifar10"),
     ("resnet50", "imagenet")],  # fmt: skip
)
def test_conv_octave_converts_the_configured_plain_nets(net, dataset):
    net = build_net(compose([f"net={net}", f"dataset={dataset}", "conv=octave", "conv.alpha=0.5"]))
    assert any(isinstance(m, OctaveConv) and m.alpha_out == 0.5 for m in net.modules())


NOT_CONVERTIBLE = [
    (lambda: DenseNetBC(3, 10, depth=10), r"no octave conversion for DenseNetBC; these convert: .*SimpleCNN.*WideResNet \(register"),
    (lambda: SimpleCNN(1, 10, [100]), r"Conv1d is not an nn.Conv2d; octave convolution is 2-D only \(in SimpleCNN\.features\)$"),
    (lambda: ToyMNISTNet(1, 10, checkered=True), r".* \(in ToyMNISTNet\.features\)$"),
]


@pytest.mark.parametrize("net, error", NOT_CONVERTIBLE)
def test_nets_that_do_not_convert_fail_in_one_line_naming_the_net(net, error):
    with pytest.raises(ValueError, match=f"^convert_to_octave: {error}") as raised:
        convert_to_octave(net(), 0.5)
    assert "\n" not in str(raised.value)


def test_oct_resnet_has_the_official_layout():
    net = OctResNet(0.5, **SMALL_BOTTLENECK)
    assert all(type(m) is not OctaveConv for m in net.stem.modules())
    stages = net.stages.layers
    first = stages[0][0]
    assert first.residual[0].alpha_in == 0.0 and first.residual[0].alpha_out == 0.5
    assert first.shortcut[0].alpha_in == 0.0 and first.shortcut[0].alpha_out == 0.5
    last = stages[3][0]
    assert (last.residual[0].alpha_in, last.residual[0].alpha_out) == (0.5, 0.0)
    assert (last.shortcut[0].alpha_in, last.shortcut[0].alpha_out) == (0.5, 0.0)
    assert all(m.alpha_in == m.alpha_out == 0.0 for m in stages[3].modules() if isinstance(m, OctaveConv) and m is not last.residual[0]
               and m is not last.shortcut[0])  # fmt: skip
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ResNet(**SMALL_BOTTLENECK).parameters())


@pytest.mark.parametrize("size", [(33, 33), (45, 61)])
def test_oct_resnets_train_at_odd_sizes(size):
    for net in (OctResNet(0.5, **SMALL_BOTTLENECK), OctResNet(0.25, in_channels=1, num_classes=10)):
        output = net(torch.randn(2, net.stem[0].in_channels if isinstance(net.stem[0], nn.Conv2d) else 1, *size))
        output.sum().backward()
        assert output.shape == (2, 10) and all(p.grad is not None for p in net.parameters())


def test_cifar_oct_resnet_starts_octave_at_the_stem():
    net = OctResNet(0.25, stage_alphas=[0.25, 0.5, 0.0], in_channels=3, num_classes=10)
    assert isinstance(net.stem[0], OctaveConv) and net.stem[0].alpha_out == 0.25
    assert net.stages.layers[1][0].residual[0].alpha_out == 0.5
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_ablation_switches_reach_every_octave_layer():
    net = OctResNet(0.5, high_to_low=False, **SMALL_BOTTLENECK)
    convs = [m for m in net.modules() if isinstance(m, OctaveConv)]
    assert all(c.weight_hl is None for c in convs if c.alpha_in > 0)
    assert any(c.weight_lh is not None for c in convs)


@pytest.mark.parametrize("overrides", [["net=oct_resnet20"], ["net=resnet20", "conv=octave"]])
def test_strided_high_to_low_reaches_every_octave_layer_from_the_config(overrides):
    """Table 3's downsampling axis: `...high_to_low_downsample=strided_conv` on either route to an Oct-ResNet."""
    key = "net" if overrides[0] == "net=oct_resnet20" else "conv"
    net = build_net(compose([*overrides, "dataset=cifar10", f"{key}.high_to_low_downsample=strided_conv"]))
    convs = [m for m in net.modules() if isinstance(m, OctaveConv)]
    assert convs and all(c.high_to_low_downsample == "strided_conv" for c in convs)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="high_to_low_downsample='pool' is not one of"):
        OctaveConversion(high_to_low_downsample="pool")


def test_conv_octave_config_converts_the_plain_net():
    cfg = compose(["net=resnet20", "dataset=cifar10", "conv=octave", "conv.alpha=0.5"])
    net = build_net(cfg)
    assert isinstance(net.stages, OctaveTrunk) and net.alpha == 0.5
    with pytest.raises(ValueError, match=r"alpha=1.5 is not in \[0, 1\)"):
        OctaveConversion(alpha=1.5)


@pytest.mark.parametrize("depth", [26, 50, 101, 152])
def test_oct_resnet_configs_compose(depth):
    cfg = compose([f"net=oct_resnet{depth}", "dataset=cifar10", "net.alpha=0.125"])
    assert cfg.net._target_ == "models.oct_resnet.OctResNet" and cfg.net.alpha == 0.125
    plain = compose([f"net=resnet{depth}", "dataset=cifar10"])
    assert list(plain.net.layers) == list(cfg.net.layers)


@pytest.mark.slow
@pytest.mark.parametrize("alpha, paper_gmacs", [(0.0, 4.105), (0.125, 3.587), (0.25, 3.123), (0.5, 2.383), (0.75, 1.891)])
def test_oct_resnet50_macs_match_the_paper_within_one_percent(alpha, paper_gmacs):
    net = OctResNet(alpha, **RESNET50) if alpha else ResNet(**RESNET50)
    macs = count_macs(net, torch.randn(1, 3, 224, 224))
    assert abs(macs / 1e9 / paper_gmacs - 1) < 0.01


def test_octave_experiments_compose_and_the_mnist_twins_differ_only_in_the_family():
    octave = compose(["experiment=octave_mnist", "conv=octave", "conv.alpha=0.5"])
    plain = compose(["experiment=octave_mnist"])
    assert OmegaConf.to_container(octave.net) == OmegaConf.to_container(plain.net) and octave.train == plain.train and octave.dataset.val_fraction == plain.dataset.val_fraction > 0
    octave_net, plain_net = build_net(octave), build_net(plain)
    assert isinstance(octave_net.stages, OctaveTrunk) and not isinstance(plain_net.stages, OctaveTrunk)
    assert sum(p.numel() for p in octave_net.parameters()) == sum(p.numel() for p in plain_net.parameters())
    assert compose(["experiment=octave_imagenet", "net.alpha=0.5"]).net._target_ == "models.oct_resnet.OctResNet"
    assert compose(["experiment=octave_imagenet", "net=resnet50"]).net._target_ == "models.resnet.ResNet"
    assert compose(["experiment=octave_cifar10", "net.alpha=0.125"]).net.block == "basic"


def test_benchmark_nets_start_with_the_baselines_and_skip_an_absent_authors_port(monkeypatch, tmp_path):
    from benchmarks.octave import AUTHORS, BASELINE, OURS_PLAIN, build_nets, parse_args

    args = parse_args(["--alphas", "0.25", "0.5"])
    assert (args.batch, args.size) == (4, 224) and args.threads[0] == 1
    monkeypatch.setenv("FARCONV_REFS", str(tmp_path))  # no checkouts there
    nets, source = build_nets(args, torch.device("cpu"))
    assert list(nets) == [BASELINE, OURS_PLAIN, "Oct-ResNet-50 a=0.25", "Oct-ResNet-50 a=0.5"]
    assert AUTHORS not in nets and "not installed" in source
    with pytest.raises(SystemExit):
        parse_args(["--alphas", "1.0"])
