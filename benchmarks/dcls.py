"""Benchmark: `Dcls2d` (fused kernel construction) against `dcls` 0.1.1 and against a dense
depthwise convolution of the same dilated size, at ConvNeXt-T stage-1 shapes.

Cases: depthwise, C = 96 channels, 56x56 input, (dilated size S, elements K) = (17, 34) and
(23, 26), versions `gauss` and `v1`. Paths, all forward + backward of `out.sum()` with every
parameter trainable: `ours` (`Dcls2d`: fused construction, then the convolution `conv_impl=auto`
picks, the FFT on CPU at these sizes), `dcls-0.1.1` (the `dcls` package, when installed; its
parameters copied from ours, outputs checked equal before timing) and `dense`
(`nn.Conv2d(C, C, S, groups=C)`: the direct convolution alone, what `dcls` 0.1.1 runs).
Reported: median forward+backward latency, peak memory of forward+backward, and the ratios
dcls/ours (target: >= 2x faster, <= 0.5x the memory) and ours/dense.

    python benchmarks/dcls.py --device cpu --out benchmarks/results [--quick]

writes `dcls_<device>.json` and `dcls_<device>.md` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from engine.profiling import median_ms, peak_memory_mb  # noqa: E402
from layers.dcls import Dcls2d  # noqa: E402

CHANNELS, RESOLUTION = 96, 56
SHAPES = ((17, 34), (23, 26))  # (dilated size, elements): ConvNeXt-T-DCLS and the wider variant
VERSIONS = ("gauss", "v1")
TARGET_SPEEDUP, TARGET_MEMORY = 2.0, 0.5
AGREEMENT_TOLERANCE = 1e-4  # max |ours - dcls| relative to max |dcls output|, float32


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


def measure(module: nn.Module, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> dict:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    return {"fwd_bwd_ms": median_ms(step, device, warmup, repeats), "peak_mb": peak_memory_mb(step, device)}


def run_case(size: int, count: int, version: str, batch: int, device: torch.device, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    ours = Dcls2d(CHANNELS, CHANNELS, count, padding=size // 2, dilated_kernel_size=size, groups=CHANNELS, version=version).to(device)
    dense = nn.Conv2d(CHANNELS, CHANNELS, size, padding=size // 2, groups=CHANNELS).to(device)
    x = torch.randn(batch, CHANNELS, RESOLUTION, RESOLUTION, device=device, requires_grad=True)
    case = {"size": size, "count": count, "version": version, "batch": batch}
    paths = {"ours": ours, "dense": dense}
    theirs = reference_layer(ours)
    if theirs is not None:
        with torch.no_grad():
            expected = theirs(x)
            case["max_rel_difference"] = ((ours(x) - expected).abs().max() / expected.abs().max()).item()
        if case["max_rel_difference"] > AGREEMENT_TOLERANCE:
            raise RuntimeError(f"benchmarks/dcls: outputs differ from dcls 0.1.1 by {case['max_rel_difference']:.2e} at {case}")
        paths["dcls-0.1.1"] = theirs
    for name, module in paths.items():
        case[name] = measure(module, x, device, warmup, repeats)
    if theirs is not None:
        case["dcls_over_ours_fwd_bwd"] = case["dcls-0.1.1"]["fwd_bwd_ms"] / case["ours"]["fwd_bwd_ms"]
        case["ours_over_dcls_peak_mb"] = case["ours"]["peak_mb"] / case["dcls-0.1.1"]["peak_mb"]
    case["ours_over_dense_fwd_bwd"] = case["ours"]["fwd_bwd_ms"] / case["dense"]["fwd_bwd_ms"]
    return case


def markdown_report(report: dict) -> str:
    lines = [
        "# DCLS benchmark (`benchmarks/dcls.py`)", "",
        f"Command: `{report['command']}`", "", f"Machine: {json.dumps(report['machine'])}", "",
        f"Depthwise, C={CHANNELS}, {RESOLUTION}x{RESOLUTION}, forward+backward, float32, medians of {report['repeats']} runs.", "",
        "| S | K | version | batch | ours ms | dcls 0.1.1 ms | dense ms | ours MB | dcls MB | dense MB | dcls/ours time | ours/dcls memory | ours/dense time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for case in report["cases"]:
        theirs = case.get("dcls-0.1.1", {})

        def fmt(value, digits=1):
            return "n/a" if value is None else f"{value:.{digits}f}"

        lines.append(
            f"| {case['size']} | {case['count']} | {case['version']} | {case['batch']} | {fmt(case['ours']['fwd_bwd_ms'])} | "
            f"{fmt(theirs.get('fwd_bwd_ms'))} | {fmt(case['dense']['fwd_bwd_ms'])} | {fmt(case['ours']['peak_mb'])} | "
            f"{fmt(theirs.get('peak_mb'))} | {fmt(case['dense']['peak_mb'])} | {fmt(case.get('dcls_over_ours_fwd_bwd'), 2)} | "
            f"{fmt(case.get('ours_over_dcls_peak_mb'), 2)} | {fmt(case['ours_over_dense_fwd_bwd'], 2)} |"
        )
    lines += ["", f"Targets: dcls/ours time >= {TARGET_SPEEDUP}, ours/dcls memory <= {TARGET_MEMORY}.", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    return "\n".join(lines)


def benchmark(quick: bool, device: str, batch: int | None = None, note: str = "", command: str = "") -> dict:
    torch_device = torch.device(device)
    batch = batch or (1 if quick else 4)
    warmup, repeats = (1, 3) if quick else (2, 7)
    shapes = SHAPES[:1] if quick else SHAPES
    cases = [run_case(s, k, v, batch, torch_device, warmup, repeats) for s, k in shapes for v in VERSIONS]
    return {"command": command, "machine": describe_machine(torch_device), "repeats": repeats, "cases": cases, "note": note}


def run(quick: bool, device: str) -> dict:
    """Suite entry (`python -m benchmarks`)."""
    return benchmark(quick, device, command=f"benchmarks.dcls.run(quick={quick}, device={device!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="one shape, batch 1, 3 repeats (< 1 min on CPU)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--note", default="", help="a line for the report, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, default=None, help="folder for dcls_<device>.json/.md")
    args = parser.parse_args()
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
