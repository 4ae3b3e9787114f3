"""`conv=dcls` in the framework's nets, ConvNeXt(-DCLS) sizes, the recipe's optimiser
groups, position clamping, the picture callback, and one-line errors for bad values."""

from __future__ import annotations

import functools
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from engine.cli import choices_of, compose
from engine.config import ConfigError
from engine.experiment import build_experiment
from engine.visualization import DclsVisualization
from engine.nets import build_net
from engine.profiling import conv_families, count_macs, count_parameters
from engine.tasks import ClassificationTask
from layers.dcls import Dcls2d, dcls_conv
from layers.dcls.dcls_layer import repulsion as dcls_repulsion
from layers.dcls.factory import check_config
from models.convnext import ConvNeXt
from tests.conftest import COMMAND_TIMEOUT, QUICK, REPO


def test_conv_dcls_turns_every_kxk_convolution_into_dcls_with_k2_elements():
    cfg = compose(["net=resnet20", "dataset=cifar10", "conv=dcls", "conv.dilated_kernel_size=5", "conv.version=v1"])
    net = build_net(cfg)
    layers = [m for m in net.modules() if isinstance(m, Dcls2d)]
    assert layers and all(m.kernel_count == 9 and m.dilated_kernel_size == (5, 5) and m.version == "v1" for m in layers)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_simple_cnn_with_dcls_keeps_its_output_size_and_trains():
    net = build_net(compose(["net=simple_cnn", "dataset=digits", "conv=dcls"]))
    assert conv_families(net) == {"dcls": 4}
    loss = net(torch.randn(3, 1, 8, 8)).logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


BAD_OPTIONS = [
    (["conv=dcls", "conv.version=v9"], "conv.version=v9 is out of range: must be one of v0, v1, max, gauss"),
    (["conv=dcls", "conv.impl=cuda"], "conv.impl=cuda is out of range: must be one of auto, reference, fused"),
    (
        ["conv=dcls", "conv.dilated_kernel_size=5", "conv.kernel_count=26"],
        "conv.kernel_count=26 is out of range: must be an integer in [1, 25], the taps of the 5x5 dilated kernel",
    ),
    (["conv=dcls", "conv.kernel_count=26"], "conv.kernel_count=26 is out of range: must be an integer in [1, 25], the taps of the 5x5"),
    (["conv=dcls", "conv.dilated_kernel_size=1"], "conv.dilated_kernel_size=1 is out of range: must be null or an integer >= the net kernel_size=3"),
    (["conv=dcls", "conv.dilated_kernel_size=6"], "conv.dilated_kernel_size=6 is out of range: must be odd like the net kernel_size=3"),
    (["conv=dcls", "conv.position_lr_factor=0"], "conv.position_lr_factor=0 is out of range: must be > 0"),
    (["conv=dcls", "conv.repulsion_factor=-0.1"], "conv.repulsion_factor=-0.1 is out of range: must be >= 0"),
    (["net=convnext_cifar_dcls", "net.conv.version=v2"], "net.conv.version=v2 is out of range: must be one of"),
    (
        ["net=convnext_cifar_dcls", "net.conv.dilated_kernel_size=5"],
        "net.conv.dilated_kernel_size=5 is out of range: must be null or an integer >= the net kernel_size=7",
    ),
]


@pytest.mark.parametrize("overrides, message", BAD_OPTIONS)
def test_bad_options_fail_with_one_line_naming_the_key(overrides, message, tmp_path):
    cfg = compose([*QUICK, f"paths.runs={tmp_path / 'runs'}", f"paths.data={tmp_path / 'data'}", *overrides])
    with pytest.raises(ValueError) as checked:  # on the composed configuration, before anything is built
        check_config(cfg)
    assert str(checked.value) == message or str(checked.value).startswith(message)
    with pytest.raises(ConfigError) as built:  # the run itself stops with the same line
        build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    # (the factory does not know whether it was configured as conv or as net.conv)
    assert message.removeprefix("net.") in str(built.value) and "\n" not in str(built.value)


def test_net_kernel_known_only_at_build_time_is_checked_by_the_factory():
    # resnet20's config does not state its kernel (3): the factory checks it when asked for one
    check_config(compose(["net=resnet20", "dataset=cifar10", "conv=dcls", "conv.dilated_kernel_size=1"]))
    with pytest.raises(ValueError, match="conv.dilated_kernel_size=1 is out of range: .* kernel_size=3"):
        dcls_conv(4, 4, 3, padding=1, dilated_kernel_size=1)
    with pytest.raises(ValueError, match="dilation=2"):
        dcls_conv(4, 4, 3, padding=1, dilation=2)


@pytest.mark.slow  # a subprocess: imports the whole framework (about 15 s on this machine)
def test_run_experiment_prints_one_error_line(tmp_path):
    command = [sys.executable, "run_experiment.py", "conv=dcls", "conv.version=v9", f"paths.runs={tmp_path}", f"paths.data={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD_OPTIONS[0][1] in lines[0], result.stderr


def convnext(variant: str, dcls: bool) -> ConvNeXt:
    depths = {"t": (3, 3, 9, 3), "s": (3, 3, 27, 3), "b": (3, 3, 27, 3)}[variant]
    dims = (128, 256, 512, 1024) if variant == "b" else (96, 192, 384, 768)
    if not dcls:
        return ConvNeXt(depths=depths, dims=dims)
    count = 34 if variant == "t" else 40
    conv = functools.partial(dcls_conv, version="v1", dilated_kernel_size=17, kernel_count=count)
    return ConvNeXt(depths=depths, dims=dims, share_positions=True, conv=conv)


@pytest.mark.slow  # builds ImageNet-size nets
@pytest.mark.parametrize(
    "variant, dense, with_dcls",
    [("t", 28_589_128, 28_587_688), ("s", 50_223_688, 50_217_064), ("b", 88_591_464, 88_582_632)],
)
def test_convnext_sizes_match_the_papers(variant, dense, with_dcls):
    # ConvNeXt-T/S/B 28.6M/50.2M/88.6M (arXiv 2201.03545); DCLS versions the same at 0.1M
    # precision (arXiv 2112.03740, Table 1): fewer weights, positions shared per stage
    assert count_parameters(convnext(variant, False)) == dense
    assert count_parameters(convnext(variant, True)) == with_dcls


@pytest.mark.slow
def test_shared_positions_are_one_parameter_per_stage():
    net = convnext("t", True)
    stage = net.stages[0]
    assert stage[0].dwconv.P is stage[2].dwconv.P
    assert stage[0].dwconv.weight is not stage[1].dwconv.weight


@pytest.mark.slow
def test_convnext_dcls_macs_count_the_dilated_convolution():
    # at 64x64 (1/12.25 of 224x224): the 17x17 depthwise convolutions add (289 - 49) MACs
    # per output value to the dense net's, and the kernel construction counts K*289 per filter
    dense, dcls = convnext("t", False), convnext("t", True)
    sample = torch.randn(1, 3, 64, 64)
    extra = count_macs(dcls, sample) - count_macs(dense, sample)
    conv_extra = 240 * sum(c * (64 // s) ** 2 * d for c, s, d in zip((96, 192, 384, 768), (4, 8, 16, 32), (3, 3, 9, 3)))
    construction = 34 * 289 * sum(c * d for c, d in zip((96, 192, 384, 768), (3, 3, 9, 3)))
    assert extra == conv_extra + construction


def test_recipe_gives_positions_their_own_learning_rate_and_no_weight_decay():
    net = build_net(compose(["net=simple_cnn", "dataset=digits", "conv=dcls"]))
    optimizer = functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.05)
    groups = ClassificationTask(num_classes=10, net=net, optimizer=optimizer).configure_optimizers().param_groups
    by_parameter = {id(p): group for group in groups for p in group["params"]}
    layer = next(m for m in net.modules() if isinstance(m, Dcls2d))
    for name in ("P", "SIG"):
        assert by_parameter[id(getattr(layer, name))]["lr"] == pytest.approx(0.05)
        assert by_parameter[id(getattr(layer, name))]["weight_decay"] == 0.0
    assert by_parameter[id(layer.weight)]["lr"] == pytest.approx(0.01)
    assert by_parameter[id(layer.weight)]["weight_decay"] == 0.05


def test_the_task_clamps_dcls_positions_after_every_optimiser_step():
    net = nn.Sequential(Dcls2d(1, 1, 2, dilated_kernel_size=5), nn.Conv2d(1, 1, 3))
    task = ClassificationTask(num_classes=2, net=net, optimizer=functools.partial(torch.optim.SGD, lr=1.0))
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)

    def closure() -> torch.Tensor:  # pushes the positions far outside the 5x5 kernel
        optimizer.zero_grad()
        loss = -100 * net[0].P.sum()
        loss.backward()
        return loss

    task.optimizer_step(0, 0, optimizer, closure)
    assert net[0].P.max().item() == 2  # the kernel's half-size


@pytest.mark.parametrize("version", ["v1", "gauss", "max"])
def test_visualization_writes_a_png_per_layer(tmp_path, version):
    net = nn.Sequential(Dcls2d(2, 4, 5, dilated_kernel_size=(7, 5), groups=2, version=version))
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], global_step=3)
    DclsVisualization(max_filters=3).draw(trainer, net, epoch=2)
    assert (tmp_path / "dcls" / "0_epoch002.png").stat().st_size > 1000


def test_repulsion_reaches_the_training_loss_once_per_set_of_positions():
    cfg = compose(["net=convnext_cifar_dcls", "dataset=cifar10", "net.depths=[2,1,1,1]", "net.conv.repulsion_factor=0.1"])
    net = build_net(cfg)
    task = ClassificationTask(num_classes=10, net=net, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    stages = [stage[0].dwconv for stage in net.stages]
    assert net.stages[0][1].dwconv.P is stages[0].P  # shared: its term counts once
    torch.testing.assert_close(task.auxiliary_loss(), 0.1 * sum(dcls_repulsion(layer.P) for layer in stages))
    plain = ClassificationTask(num_classes=10, net=build_net(compose(["net=simple_cnn", "dataset=digits", "conv=dcls"])), optimizer=torch.optim.Adam)
    assert plain.auxiliary_loss() is None  # off by default
