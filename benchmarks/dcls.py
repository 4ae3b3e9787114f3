"""Benchmark: `Dcls2d` (fused kernel construction) against `dcls` 0.1.1 and against a dense
depthwise convolution of the same dilated size, at every ConvNeXt-T stage, time beside memory.

Cases: depthwise DCLS at the four ConvNeXt-T stages (C, map) = (96, 56), (192, 28), (384, 14),
(768, 7) with ConvNeXt-T-DCLS's (dilated size S, elements K) = (17, 34), and at stage 1 the
wider (23, 26); versions `v1` (the paper's ConvNeXt) and `gauss`. Paths, all forward +
backward of `out.sum()` with every parameter trainable: `ours` (`Dcls2d`: fused construction,
then the convolution `conv_impl=auto` picks: the FFT on CPU for these kernels), `dcls-0.1.1`
(the `dcls` package, when installed; its parameters copied from ours, outputs checked equal
before timing; skipped, and said so, when absent) and `dense` (`nn.Conv2d(C, C, S, groups=C)`:
the direct convolution alone, what `dcls` 0.1.1 runs after its construction). The paths are
timed interleaved (`benchmarks/timing.py`; on CPU this process's CPU time, which a shared
machine disturbs less than wall time). Reported: median forward+backward latency and
peak memory of forward+backward per path, and the ratios dcls/ours time (target >= 2x),
ours/dcls memory (target <= 1 at every stage) and ours/dense time.

    python benchmarks/dcls.py --device cpu --out benchmarks/results [--quick]

writes `dcls_<device>.json` and `dcls_<device>.md` into `--out`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.agreement import exact_float32  # noqa: E402
from benchmarks.timing import interleaved, ratio  # noqa: E402
from engine.profiling import peak_memory_mb  # noqa: E402
from layers.dcls import Dcls2d  # noqa: E402

STAGES = ((96, 56), (192, 28), (384, 14), (768, 7))  # ConvNeXt-T: (channels, map size) at 224 x 224
CASES = {  # (channels, map size, dilated size S, elements K, version)
    "full": [*((c, r, 17, 34, v) for c, r in STAGES for v in ("v1", "gauss")), (96, 56, 23, 26, "v1"), (96, 56, 23, 26, "gauss")],
    "quick": [(96, 56, 17, 34, "v1"), (768, 7, 17, 34, "v1")],
}
TARGET_SPEEDUP, TARGET_MEMORY = 2.0, 1.0
AGREEMENT_TOLERANCE = 1e-4  # max |ours - dcls| relative to max |dcls output|, float32


def reference_layer_available() -> bool:
    return importlib.util.find_spec("DCLS") is not None


def reference_layer(ours: Dcls2d) -> nn.Module | None:
    """The `dcls` 0.1.1 layer with our parameters, or None when the package is absent."""
    try:
        from DCLS.construct.modules import Dcls2d as ReferenceDcls2d
    except ImportError:
        return None
    logging.getLogger().setLevel(logging.ERROR)  # its CUDA-GEMM notices, once per layer
    theirs = ReferenceDcls2d(
        ours.in_channels, ours.out_channels, ours.kernel_count, padding=ours.padding,
        dilated_kernel_size=ours.dilated_kernel_size, groups=ours.groups, version=ours.version,
    )  # fmt: skip
    theirs.load_state_dict(ours.state_dict())
    return theirs.to(ours.weight.device)


def run_case(channels: int, resolution: int, size: int, count: int, version: str, batch: int, device: torch.device,
             warmup: int, repeats: int) -> dict:  # fmt: skip
    torch.manual_seed(0)
    ours = Dcls2d(channels, channels, count, padding=size // 2, dilated_kernel_size=size, groups=channels, version=version).to(device)
    dense = nn.Conv2d(channels, channels, size, padding=size // 2, groups=channels).to(device)
    x = torch.randn(batch, channels, resolution, resolution, device=device, requires_grad=True)
    case = {"channels": channels, "resolution": resolution, "size": size, "count": count, "version": version, "batch": batch,
            "ours_conv": "fft" if ours.uses_fft(x) else "direct"}  # fmt: skip
    paths = {"ours": ours, "dense": dense}
    theirs = reference_layer(ours)
    if theirs is not None:
        with exact_float32(), torch.no_grad():
            expected = theirs(x)
            case["max_rel_difference"] = ((ours(x) - expected).abs().max() / expected.abs().max()).item()
        if case["max_rel_difference"] > AGREEMENT_TOLERANCE:
            raise RuntimeError(f"benchmarks/dcls: outputs differ from dcls 0.1.1 by {case['max_rel_difference']:.2e} at {case}")
        paths["dcls-0.1.1"] = theirs

    def step(module: nn.Module):
        def forward_backward() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()

        return forward_backward

    times = interleaved({name: step(module) for name, module in paths.items()}, device, repeats, warmup, cpu_time=True)
    for name, module in paths.items():
        case[name] = {"fwd_bwd_ms": statistics.median(times[name]), "peak_mb": peak_memory_mb(step(module), device)}
    if theirs is not None:
        case["dcls_over_ours_fwd_bwd"] = ratio(times["dcls-0.1.1"], times["ours"])
        case["ours_over_dcls_peak_mb"] = case["ours"]["peak_mb"] / case["dcls-0.1.1"]["peak_mb"]
    case["ours_over_dense_fwd_bwd"] = ratio(times["ours"], times["dense"])
    return case


def markdown_report(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# DCLS benchmark (`benchmarks/dcls.py`)", "",
        f"Command: `{report['command']}` on {machine['summary']}, {machine['torch_threads']} torch thread(s), {machine['date']}; "
        f"1-minute load average {report['load_average_1min']['before']:.1f} before, {report['load_average_1min']['after']:.1f} after.", "",
        f"Depthwise DCLS at the ConvNeXt-T stages, forward+backward, float32, medians of {report['repeats']} interleaved rounds "
        f"({'process CPU time' if report['machine'].get('gpu') is None else 'wall time'}); "
        f"peak memory of one forward+backward. dcls 0.1.1: {report['reference']}.", "",
        "| C | map | S | K | version | batch | our conv | ours ms | dcls 0.1.1 ms | dense ms | ours MB | dcls MB | dense MB "
        "| dcls/ours time | ours/dcls memory | ours/dense time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip

    def fmt(value, digits=1):
        return "n/a" if value is None else f"{value:.{digits}f}"

    for case in report["cases"]:
        theirs = case.get("dcls-0.1.1", {})
        lines.append(
            f"| {case['channels']} | {case['resolution']} | {case['size']} | {case['count']} | {case['version']} | {case['batch']} | "
            f"{case['ours_conv']} | {fmt(case['ours']['fwd_bwd_ms'])} | {fmt(theirs.get('fwd_bwd_ms'))} | {fmt(case['dense']['fwd_bwd_ms'])} | "
            f"{fmt(case['ours']['peak_mb'])} | {fmt(theirs.get('peak_mb'))} | {fmt(case['dense']['peak_mb'])} | "
            f"{fmt(case.get('dcls_over_ours_fwd_bwd'), 2)} | {fmt(case.get('ours_over_dcls_peak_mb'), 2)} | {fmt(case['ours_over_dense_fwd_bwd'], 2)} |"
        )
    memory = [case["ours_over_dcls_peak_mb"] for case in report["cases"] if "ours_over_dcls_peak_mb" in case]
    speed = [case["dcls_over_ours_fwd_bwd"] for case in report["cases"] if "dcls_over_ours_fwd_bwd" in case]
    if memory:
        lines += ["", f"Targets: dcls/ours time >= {TARGET_SPEEDUP}: worst {min(speed):.2f} ({'met' if min(speed) >= TARGET_SPEEDUP else 'NOT met'}); "
                  f"ours/dcls memory <= {TARGET_MEMORY} at every stage: worst {max(memory):.2f} ({'met' if max(memory) <= TARGET_MEMORY else 'NOT met'})."]  # fmt: skip
    else:
        lines += ["", "Targets against dcls 0.1.1: not measured (the package is not installed)."]
    lines.append("")
    if report.get("note"):
        lines += [report["note"], ""]
    return "\n".join(lines)


def benchmark(quick: bool, device: str, batch: int | None = None, note: str = "", command: str = "") -> dict:
    torch_device = torch.device(device)
    batch = batch or (1 if quick else 4)
    warmup, repeats = (1, 3) if quick else (1, 5)
    load_before = os.getloadavg()[0]
    cases = [run_case(*case, batch, torch_device, warmup, repeats) for case in CASES["quick" if quick else "full"]]
    return {"command": command, "machine": describe_machine(torch_device), "repeats": repeats, "cases": cases, "note": note,
            "reference": "installed" if reference_layer_available() else "not installed (pip install dcls==0.1.1)",
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}  # fmt: skip


def run(quick: bool, device: str) -> dict:
    """Suite entry (`python -m benchmarks`)."""
    return benchmark(quick, device, command=f"benchmarks.dcls.run(quick={quick}, device={device!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="one shape, batch 1, 3 repeats (< 1 min on CPU)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--note", default="", help="a line for the report, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, default=None, help="folder for dcls_<device>.json/.md")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = benchmark(args.quick, args.device, args.batch, args.note, command="python " + " ".join(sys.argv))
    text = markdown_report(report)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"dcls_{torch.device(args.device).type}"
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
        (args.out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
