"""run_profiler.py: parameters, MACs (custom ops included), latency, peak memory, JSON line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from engine.profiling import count_macs, measure, peak_memory_mb
from layers import BoxConv2d
from tests.conftest import REPO


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
    assert cost.params == 40 and cost.macs == 4 * 10 * 10 * 9
    assert cost.fwd_ms > 0 and cost.fwd_bwd_ms > 0 and cost.peak_mem_mb > 0 and cost.device == "cpu"


def test_profiler_command_prints_counts_and_a_json_last_line():
    result = subprocess.run(
        [sys.executable, "run_profiler.py", "net=boxenet", "dataset=cityscapes", "dataset.input_size=[64,128]", "profile.warmup=0", "profile.repeats=1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "parameters: 249,830" in result.stdout  # BoxENet with 19 classes
    report = json.loads(lines[-1])
    assert set(report) == {"params", "macs", "input_shape", "fwd_ms", "fwd_bwd_ms", "peak_mem_mb", "device"}
    assert report["params"] == 249830 and report["input_shape"] == [3, 64, 128] and report["macs"] > 0
