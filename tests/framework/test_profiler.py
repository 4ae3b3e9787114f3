"""run_profiler.py: parameters, MACs (custom ops included), latency, peak memory, the
convolution families a net contains, a JSON line; and every net of cfg/net/ profiles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from engine.cli import CONFIG_DIR, compose
from engine.config import ConfigError
from engine.profiling import conv_families, count_macs, measure, peak_memory_mb
from layers import BoxConv2d
from tests.conftest import COMMAND_TIMEOUT, REPO

# Every net of cfg/net/ with its default dataset and what keeps profiling it quick on CPU
# (batch 2, one repeat). Adding a net? Add its row here: test_every_net_has_a_profile_case
# fails for a net without one. Put ImageNet-size nets in SLOW_PROFILES too (marked slow).
PROFILE_CASES: dict[str, list[str]] = {
    "simple_cnn": ["dataset=digits"],
    "resnet20": ["dataset=cifar10"],
    "resnet18": ["dataset=cifar100"],  # BatchNorm on 1x1 maps: a batch of 1 cannot train
    "resnet50": ["dataset=imagenet"],
    "box_mnist": ["dataset=mnist"],
    "enet": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "boxenet": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "boxonlyenet": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "enet_minus": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "erfnet": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "boxerfnet": ["dataset=cityscapes", "dataset.input_size=[32,64]"],
    "flexnet3": ["dataset=cifar10"],
    "flexnet5": ["dataset=cifar10"],
    "flexnet7": ["dataset=cifar10"],
    "flextcn2": ["dataset=mnist1d", "conv=flex"],
    "flextcn4": ["dataset=mnist1d"],
    "flextcn6": ["dataset=mnist1d"],
    "ckcnn": ["dataset=mnist1d", "conv=ckconv", "kernel=siren"],
    "resnet26": ["dataset=imagenet"],
    "resnet101": ["dataset=imagenet"],
    "resnet152": ["dataset=imagenet"],
    "oct_resnet20": ["dataset=cifar10"],
    "oct_resnet26": ["dataset=imagenet"],
    "oct_resnet50": ["dataset=imagenet"],
    "oct_resnet101": ["dataset=imagenet"],
    "oct_resnet152": ["dataset=imagenet"],
    "ccnn_mnist": ["dataset=mnist"],
    "cnn_mnist": ["dataset=mnist", "conv=checkered"],
    "resnet18_cifar": ["dataset=cifar10", "conv=checkered"],
    "resnet50_cifar": ["dataset=cifar100"],
    "resnet18_tiny": ["dataset=cifar10"],
    "resnet50_tiny": ["dataset=cifar10"],
    "densenet_bc40": ["dataset=cifar10", "conv=checkered"],
    "vgg11_bn_cifar": ["dataset=cifar10"],
    "wrn28_10": ["dataset=cifar10"],
    "convnext_t": ["dataset=imagenet"],
    "convnext_s": ["dataset=imagenet"],
    "convnext_b": ["dataset=imagenet"],
    "convnext_t_dcls": ["dataset=imagenet"],
    "convnext_s_dcls": ["dataset=imagenet"],
    "convnext_b_dcls": ["dataset=imagenet"],
    "convnext_cifar_dcls": ["dataset=cifar10"],
}
SLOW_PROFILES = {"resnet50"}
SLOW_PROFILES |= {"resnet26", "resnet101", "resnet152", "oct_resnet26", "oct_resnet50", "oct_resnet101", "oct_resnet152"}
SLOW_PROFILES |= {"resnet18_cifar", "resnet50_cifar", "wrn28_10"}  # seconds per forward+backward on CPU
SLOW_PROFILES |= {"convnext_t", "convnext_s", "convnext_b", "convnext_t_dcls", "convnext_s_dcls", "convnext_b_dcls"}
# Families each net must show (from its modules, whatever conv= says); others: any.
EXPECTED_FAMILIES = {"boxenet": "box", "boxonlyenet": "box", "boxerfnet": "box", "box_mnist": "box", "resnet18": "standard", "flextcn2": "flexconv", "ckcnn": "flexconv"}
EXPECTED_FAMILIES |= {"convnext_t_dcls": "dcls", "convnext_s_dcls": "dcls", "convnext_b_dcls": "dcls", "convnext_cifar_dcls": "dcls"}
EXPECTED_FAMILIES |= {"ccnn_mnist": "checkered", "cnn_mnist": "checkered", "resnet18_cifar": "checkered", "densenet_bc40": "checkered"}


def net_options() -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / "net").glob("*.yaml"))


def test_every_net_has_a_profile_case():
    assert sorted(PROFILE_CASES) == net_options(), "add a PROFILE_CASES row for every cfg/net/*.yaml (and remove rows of deleted nets)"


@pytest.mark.parametrize("net", [pytest.param(net, marks=pytest.mark.slow) if net in SLOW_PROFILES else net for net in sorted(PROFILE_CASES)])
def test_every_net_profiles_with_its_default_dataset(net, capsys):
    from run_profiler import profile

    cfg = compose([f"net={net}", *PROFILE_CASES[net], "profile.warmup=0", "profile.repeats=1", "profile.device=cpu"])
    report = profile(cfg)
    assert report["params"] > 0 and report["macs"] > 0 and report["fwd_bwd_ms"] > 0
    assert report["conv_families"], "a net without any convolution"
    if net == "boxenet":
        assert report["params"] == 249830  # with 19 classes, as the reference model
    if net in EXPECTED_FAMILIES:
        assert EXPECTED_FAMILIES[net] in report["conv_families"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report


def test_conv_families_are_found_from_the_layer_packages():
    net = nn.Sequential(BoxConv2d(2, 3, 16, 16), nn.Conv2d(6, 4, 1), nn.Conv1d(4, 4, 3))
    assert conv_families(net) == {"box": 1, "standard": 2}


def test_macs_of_a_convolution_and_a_linear_layer():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    assert count_macs(net, torch.zeros(1, 3, 16, 16)) == 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16 * 10


def test_box_convolution_registers_its_cost():
    net = nn.Sequential(BoxConv2d(2, 3, 16, 16), nn.Conv2d(6, 4, 1, bias=False))
    assert count_macs(net, torch.zeros(1, 2, 16, 16)) == 17 * 6 * 16 * 16 + 6 * 4 * 16 * 16


def test_cpu_peak_memory_sees_the_step_allocations():
    def step() -> torch.Tensor:
        return torch.ones(1024, 1024)  # 4 MiB

    assert peak_memory_mb(step, torch.device("cpu")) == pytest.approx(4.0, rel=0.05)


def test_measure_reports_every_field():
    cost = measure(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), (1, 12, 12), batch_size=2, device=torch.device("cpu"), warmup=1, repeats=2)
    assert cost.params == 40 and cost.macs == 4 * 10 * 10 * 9 and cost.conv_families == {"standard": 1}
    assert cost.fwd_ms > 0 and cost.fwd_bwd_ms > 0 and cost.peak_mem_mb > 0 and cost.device == "cpu"


def test_profiler_command_prints_counts_families_and_a_json_last_line_without_native_noise():
    result = subprocess.run(
        [sys.executable, "run_profiler.py", "net=box_mnist", "dataset=mnist", "profile.warmup=0", "profile.repeats=1", "profile.device=cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gpuGetDeviceCount" not in result.stderr and "profiler_start" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert "conv=standard" in lines[0] and "convolution families in the net: box (1 modules), standard (1 modules)" in lines[1]
    report = json.loads(lines[-1])
    assert set(report) == {"params", "macs", "input_shape", "fwd_ms", "fwd_bwd_ms", "peak_mem_mb", "device", "conv_families"}
    assert report["input_shape"] == [1, 28, 28] and report["macs"] > 0 and report["conv_families"] == {"box": 1, "standard": 1}


def test_a_batch_a_net_cannot_take_is_one_config_error():
    from run_profiler import profile

    with pytest.raises(ConfigError) as error:
        profile(compose(["net=resnet18", "dataset=cifar100", "profile.batch_size=1", "profile.warmup=0", "profile.repeats=1"]))
    assert "net=resnet18 cannot run a batch of profile.batch_size=1" in str(error.value) and "use profile.batch_size >= 2" in str(error.value)


def test_repeats_zero_counts_without_timing(monkeypatch, capsys):
    """The quick look: boxenet at the full 512x1024 in seconds, since nothing is timed."""
    import engine.profiling
    from run_profiler import profile

    def not_called(*args, **kwargs):
        raise AssertionError("profile.repeats=0 must not time or measure memory")

    monkeypatch.setattr(engine.profiling, "median_ms", not_called)
    monkeypatch.setattr(engine.profiling, "peak_memory_mb", not_called)
    report = profile(compose(["net=boxenet", "dataset=cityscapes", "profile.repeats=0", "profile.device=cpu"]))
    assert report["params"] == 249830 and report["macs"] > 0 and report["conv_families"]["box"] > 0
    assert report["fwd_ms"] is None and report["fwd_bwd_ms"] is None and report["peak_mem_mb"] is None
    out = capsys.readouterr().out
    assert "not measured (profile.repeats=0)" in out and json.loads(out.strip().splitlines()[-1]) == report
