"""`python -m benchmarks`: the registry, the no-silent-fallback rules, a small end-to-end run."""

from __future__ import annotations

import importlib
import json
import re

import pytest
import torch
from torch import nn

from benchmarks import probes, report, throughput
from benchmarks.__main__ import parse_args
from benchmarks.registry import FAMILIES, STANDARD, Family, ModelCase, model_cases, select
from benchmarks.suite import resolve, run_device
from engine.cli import CONFIG_DIR

TINY = probes.ProbeShape(batch=2, channels=2, size=8, kernel=3, warmup=0, repeats=1)


def test_every_registered_family_resolves():
    for family in FAMILIES:
        assert (CONFIG_DIR / "conv" / f"{family.conv}.yaml").is_file(), family.name
        if family.benchmark is not None:
            assert callable(importlib.import_module(family.benchmark).run), family.benchmark
        for extra in family.extras:
            assert callable(resolve(extra)), extra
        for case in family.models:
            assert (CONFIG_DIR / "net" / f"{case.net}.yaml").is_file(), case.label
            assert (CONFIG_DIR / "dataset" / f"{case.dataset}.yaml").is_file(), case.label


def test_only_selects_families_and_names_unknown_ones(capsys):
    assert select(None) == list(FAMILIES) and select("box") == [family for family in FAMILIES if family.name == "box"]
    with pytest.raises(ValueError, match="unknown family nope; known: box"):
        select("box,nope")
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])
    assert "--only 'nope': unknown family nope" in capsys.readouterr().err


def test_model_cases_start_with_the_plain_baselines():
    box = select("box")
    cases = model_cases(box)
    assert cases[: len(STANDARD.models)] == list(STANDARD.models)
    assert all(case.baseline is None or case.baseline in [c.label for c in cases[: cases.index(case)]] for case in cases)
    with pytest.raises(ValueError, match="baseline 'VGG'"):
        model_cases([Family("x", "standard", "", models=(ModelCase("Y", "simple_cnn", "digits", baseline="VGG"),))])


class Float32Island(nn.Module):
    """A layer that silently computes in float32 under autocast (as a custom op autocast does not know would)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.weight


def test_bf16_autocast_fails_loudly_on_a_float32_layer():
    x = torch.randn(2, 2, 4, 4)
    probes.check_bf16_outputs(nn.Conv2d(2, 2, 3), x)  # autocast runs conv2d in bf16
    with pytest.raises(probes.SilentFallback, match=r"Float32Island \(the layer\) returns torch.float32"):
        probes.check_bf16_outputs(Float32Island(), x)
    measured = probes.measure_mode(Float32Island(), x.requires_grad_(), "bf16_autocast", TINY, "eager")
    assert measured["status"] == "failed" and "computes in float32" in measured["error"]


class GraphBreak(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._dynamo.graph_break()
        return x * 2


def test_compile_uses_fullgraph_so_a_graph_break_fails():
    x = torch.ones(1, 2, 4, 4, requires_grad=True)
    ok = probes.measure_mode(nn.Conv2d(2, 2, 3), x, "compile", TINY, "eager")
    assert ok["status"] == "ok" and ok["fwd_bwd_ms"] > 0 and ok["backend"] == "eager"
    broken = probes.measure_mode(GraphBreak(), x, "compile", TINY, "eager")
    assert broken["status"] == "failed" and "graph_break" in broken["error"]


def fake_benchmark(quick: bool, device: str) -> dict:
    return {"quick": quick, "device": device, "verdict": "yes (fake)"}


def markdown_report(result: dict) -> str:
    """The suite embeds a family module's own tables."""
    return f"# Fake family\n\ntarget: {result['verdict']}\n"


def test_a_small_run_writes_json_markdown_and_chart(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "QUICK_SHAPE", TINY)
    monkeypatch.setattr("benchmarks.suite.measure_bandwidth", lambda device, quick: {"buffer_mb": 1.0, "copy_ms": 1.0, "sum_ms": 1.0, "copy_gb_s": 2.0, "sum_gb_s": 1.0, "repeats": 1})
    families = [
        Family("box", "box", "", benchmark="tests.benchmarks.test_suite:fake_benchmark"),
        Family("broken", "no_such_conv", "", extras=("tests.benchmarks.test_suite:no_such_function",)),
    ]
    result = run_device(families, "cpu", quick=True, compile_backend="eager", include_models=False, note="shared CPU")
    result["command"] = "test"
    box = result["layers"]["box"]["modes"]
    assert box["float32"]["status"] == "ok" and box["float32"]["ratio_fwd_bwd"] > 0
    assert box["bf16_autocast"]["status"] == "ok" and box["compile"]["status"] == "ok"
    assert all(mode["status"] == "failed" and "cannot build the layer" in mode["error"] for mode in result["layers"]["broken"]["modes"].values())
    assert result["families"]["box"]["own_benchmark"]["result"]["quick"] is True
    assert result["families"]["broken"]["extras"]["tests.benchmarks.test_suite:no_such_function"]["status"] == "failed"
    assert result["machine"]["torch"] == torch.__version__ and "torch_threads" in result["machine"]
    json_path, markdown_path, chart_path = report.write(result, tmp_path / "cpu-test")
    assert json.loads(json_path.read_text())["settings"]["note"] == "shared CPU"
    markdown = markdown_path.read_text()
    assert "> shared CPU" in markdown and "| box | BoxPointwiseConv2d |" in markdown and "#### Fake family\n\ntarget: yes (fake)" in markdown
    assert chart_path.stat().st_size > 0


def test_models_are_compared_with_their_baseline():
    rows = [
        throughput.measure_model(ModelCase("plain", "simple_cnn", "digits"), "cpu", quick=True),
        throughput.measure_model(ModelCase("boxed", "simple_cnn", "digits", conv="box", baseline="plain"), "cpu", quick=True),
        throughput.measure_model(ModelCase("bad", "no_such_net", "digits", baseline="plain"), "cpu", quick=True),
    ]
    throughput.add_ratios(rows)
    assert rows[1]["ratio_fwd_bwd"] == pytest.approx(rows[1]["fwd_bwd_ms"] / rows[0]["fwd_bwd_ms"])
    assert rows[1]["images_per_s"] > 0 and rows[1]["peak_mem_mb"] > 0
    assert rows[2]["status"] == "failed" and "no_such_net" in rows[2]["error"]


def test_help_states_each_default_once_and_only_real_ones(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    options = " ".join(capsys.readouterr().out.split()).split(" --")[1:]
    for text in options:
        assert text.count("(default:") <= 1, text
        assert not re.search(r"\(default: (None|False|)\)", text), text
    assert any("(default: all)" in text for text in options)
