"""FlexNet, FlexTCN and CKCNN: published sizes, config composition, one-line errors, training."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import check_command_line, choices_of, compose
from engine.config import ConfigError
from engine.experiment import build_experiment
from engine.nets import build_net
from layers.flexconv import CKConv1d, FlexConv1d, FlexConv2d, GaborNet, SIREN
from tests.conftest import QUICK


def parameters(overrides: list[str]) -> int:
    return sum(p.numel() for p in build_net(compose(overrides)).parameters())


@pytest.mark.parametrize(
    "net, dataset, expected",
    [
        ("flexnet7", "cifar10", 671_650),  # the paper: 0.67M
        ("flexnet5", "cifar10", 454_046),  # the paper: 0.44M (the reference's widths give 0.454M)
        ("flexnet3", "cifar10", 277_090),  # the paper: 0.27M (the reference's widths give 0.277M)
    ],
)
def test_flexnet_sizes(net, dataset, expected):
    assert parameters([f"net={net}", f"dataset={dataset}", "conv=flex"]) == expected


@pytest.mark.parametrize("net, published", [("flextcn2", 108_000), ("flextcn4", 241_000), ("flextcn6", 375_000)])
def test_flextcn_sizes_match_the_paper(net, published):
    # the paper's counts are for 3-channel sequences (sCIFAR10): mnist1d with 3 channels has the same shapes
    count = parameters([f"net={net}", "dataset=mnist1d", "dataset.in_channels=3", "conv=flex"])
    assert abs(count - published) < 500


def test_ckcnn_size():
    assert parameters(["net=ckcnn", "dataset=mnist1d", "conv=ckconv", "kernel=siren"]) == 99_524  # the paper: ~100K


def test_composition_reaches_the_layers():
    cfg = compose(["net=flextcn2", "dataset=mnist1d", "conv=flex", "kernel=gabor", "mask.threshold=0.2", "mask.init_value=0.1",
                   "kernel.regularize.target=gabor+mask", "kernel.net.hidden_channels=8", "conv.horizon=full"])  # fmt: skip
    layers = [m for m in build_net(cfg).modules() if isinstance(m, FlexConv1d)]
    assert len(layers) == 4
    layer = layers[0]
    assert isinstance(layer.kernel_net, GaborNet) and layer.kernel_net.hidden_channels == 8
    assert layer.mask_threshold == 0.2 and layer.mask_sigma.tolist() == pytest.approx([0.1])
    assert layer.regularize_target == "gabor+mask" and layer.horizon == "full"
    ck = [m for m in build_net(compose(["net=ckcnn", "dataset=mnist1d", "conv=ckconv", "kernel=siren", "kernel.net.omega_0=100"])).modules() if isinstance(m, CKConv1d)]
    assert isinstance(ck[0].kernel_net, SIREN) and ck[0].kernel_net.omega_0.item() == 100


@pytest.mark.parametrize(
    "overrides, layer, kernel_net",
    [
        (["net=flexnet3", "dataset=cifar10"], FlexConv2d, "MAGNet"),
        (["net=flextcn2", "dataset=mnist1d"], FlexConv1d, "MAGNet"),
        (["net=ckcnn", "dataset=mnist1d"], CKConv1d, "SIREN"),
        (["net=ckcnn", "dataset=mnist1d", "conv=flex", "kernel=gabor"], FlexConv1d, "GaborNet"),
    ],
)
def test_the_papers_nets_build_the_papers_layers_unless_told_otherwise(overrides, layer, kernel_net):
    layers = [m for m in build_net(compose(overrides)).modules() if isinstance(m, (FlexConv1d, FlexConv2d, CKConv1d))]
    assert layers and all(type(m) is layer and type(m.kernel_net).__name__ == kernel_net for m in layers)
    assert choices_of(compose(overrides))["conv"] == ("ckconv" if layer is CKConv1d else "flex")


def test_the_papers_nets_take_the_standard_baseline_on_request():
    net = build_net(compose(["net=flexnet3", "dataset=cifar10", "conv=standard"]))
    assert not any(isinstance(m, (FlexConv1d, FlexConv2d, CKConv1d)) for m in net.modules())


def test_other_nets_take_the_families():
    net = build_net(compose(["net=resnet20", "dataset=cifar10", "conv=flex", "kernel=fourier"]))
    assert sum(isinstance(m, FlexConv2d) for m in net.modules()) == 19


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["net=flextcn2", "conv=flex", "conv.horizon=8"], "conv.horizon=8 is out of range: must be same, full or an odd kernel size"),
        (["conv=flex", "mask.threshold=1.0"], "mask.threshold=1.0 is out of range: must be in (0, 1)"),
        (["conv=flex", "kernel=wavelet"], "kernel=wavelet does not exist; available kernel options: fourier, gabor, magnet, mlp, siren"),
        (["conv=flex", "kernel.regularize.target=sines"], "kernel.regularize.target=sines is out of range: must be one of gabor, gabor+mask"),
        (["conv=flex", "mask.crop=ceil"], "mask.crop=ceil is out of range: must be one of cover, inside"),
        (["conv=flex", "kernel=siren", "kernel.net.omega_0=0"], "kernel.net.omega_0=0 is out of range: must be > 0"),
    ],
)
def test_bad_values_fail_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_command_line(overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def run(overrides: list[str], tmp_path: Path) -> dict[str, float]:
    cfg = compose([*QUICK, f"paths.runs={tmp_path / 'runs'}", f"paths.data={tmp_path / 'data'}", *overrides])
    return build_experiment(cfg, tmp_path / "run", choices_of(cfg)).run()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["net=flextcn2", "dataset=digits", "conv=flex"], "flextcn: input_size=[8, 8] must be [length]"),
        (["net=flexnet3", "dataset=mnist1d", "conv=flex"], "flexnet: input_size=[40] must be [height, width]"),
        (["net=ckcnn", "dataset=mnist1d", "conv=ckconv", "kernel.regularize.target=gabor+mask"], "regularize target='gabor+mask' must be null or one of gabor"),
        (["net=ckcnn", "dataset=mnist1d", "conv=ckconv", "kernel=siren", "kernel.regularize.target=gabor"], "needs a Gabor kernel network"),
    ],
)
def test_impossible_nets_stop_before_training(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as error:
        run(overrides, tmp_path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["net=flexnet3", "dataset=digits", "conv=flex", "kernel.regularize.target=gabor+mask"],
        ["net=flextcn2", "dataset=mnist1d", "dataset.num_samples=200", "conv=flex"],
        ["net=ckcnn", "dataset=mnist1d", "dataset.num_samples=200", "conv=ckconv", "kernel=siren"],
    ],
)
def test_fast_dev_run(overrides, tmp_path):
    metrics = run([*overrides, "+trainer.fast_dev_run=true"], tmp_path)
    assert 0.0 <= metrics["test/acc"] <= 1.0
