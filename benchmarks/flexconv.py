"""Benchmark: FlexConv forward+backward (kernel generation + convolution) against a plain
convolution with the same dense kernel size, the share of time spent generating kernels,
and where the FFT path overtakes the spatial one.

Three parts, all forward + backward of `out.sum()` with an input that requires a gradient:

- `layers`: `FlexConv2d` at FlexNet-7's CIFAR-10 shapes (its widest layer, 48 -> 48 channels,
  32 x 32, horizon 33) with masks cropping the kernel to 5 (the initial mask), 17 and 33 (the
  whole horizon) samples, and `FlexConv1d` at sMNIST shapes (FlexTCN's 30 -> 30 channels,
  length 784) with the initial mask (63 samples) and a `CKConv1d` over the whole sequence.
  Each against `nn.Conv2d/Conv1d` with a dense kernel of the cropped size (the same padding),
  and the layer's kernel generation alone (kernel network + mask, forward + backward of a
  random projection of the kernel): `generation share = generation / layer`.
- `crossover`: `spatial_conv` against `fft_conv` for growing kernels, 2-D (32 x 32) and 1-D
  (784): the smallest kernel from which the FFT is faster, the value `conv.fft_threshold`
  should have on this machine.

    python benchmarks/flexconv.py --device cpu --out benchmarks/results

writes `flexconv_<device>.json` and `flexconv_<device>.md` (`flexconv_<device>_quick.*` with
`--quick`: batch 4, 16 channels, fewer sizes; under a minute on an idle 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from engine.profiling import median_ms  # noqa: E402
from layers.flexconv import CKConv1d, FlexConv1d, FlexConv2d, MAGNet, fft_conv, spatial_conv  # noqa: E402
from layers.flexconv.ckconv import CKConv  # noqa: E402
from layers.flexconv.mask import threshold_radius  # noqa: E402

TARGET_SHARE = 0.20  # kernel generation should take at most this share of the layer's time
SLOW_CALL_S = 10.0  # a call slower than this is timed once


def log(message: str) -> None:
    print(f"[flexconv benchmark] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="batch 4, narrower layers, fewer sizes, 2 repeats")
    parser.add_argument("--batch", type=int, default=None, help="default: 64 (8 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--note", default="", help="written at the top of the results, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.quick else 64)
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.batch < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--batch={args.batch}, --repeats={args.repeats} and --threads={args.threads} must be >= 1")
    return args


def timed_ms(step: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median latency of `step` over `repeats` calls after one warm-up call; a call slower than
    `SLOW_CALL_S` is measured once (the warm-up call itself), so large dense kernels stay affordable."""
    first = median_ms(step, device, warmup=0, repeats=1)
    if first > SLOW_CALL_S * 1e3:
        return first
    return median_ms(step, device, warmup=0, repeats=repeats)


def forward_backward_ms(step_module: nn.Module | Callable[[Tensor], Tensor], x: Tensor, repeats: int) -> float:
    """Median latency of `module(x).sum().backward()`."""

    def step() -> None:
        x.grad = None
        step_module(x).sum().backward()

    return timed_ms(step, x.device, repeats)


def generation_ms(layer: CKConv, input_size: tuple[int, ...], repeats: int, device: torch.device) -> float:
    """Median latency of generating the layer's kernel and back-propagating into the kernel network."""
    projection = torch.randn(layer.generate_kernel(input_size).shape, device=device)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        (layer.generate_kernel(input_size) * projection).sum().backward()

    return timed_ms(step, device, repeats)


def sigma_for_size(size: int, grid: int, threshold: float = 0.1) -> float:
    """A centred mask width whose crop keeps `size` of `grid` samples (odd sizes)."""
    half = (size - 1) // 2
    return (half + 0.5) / ((grid - 1) / 2) / threshold_radius(1.0, threshold)


def layer_case(name: str, layer: CKConv, x: Tensor, repeats: int) -> dict:
    """The layer, its kernel generation and the dense convolution of its kernel size."""
    layer(x)  # fixes the grid and the crop
    size = layer.kernel_size
    dim = layer.dim
    dense = (nn.Conv1d if dim == 1 else nn.Conv2d)(layer.in_channels, layer.out_channels, size, padding=0 if dim == 1 else tuple(s // 2 for s in size)).to(x.device)
    dense_step = (lambda t: dense(nn.functional.pad(t, (size[0] - 1, 0)))) if dim == 1 else dense
    log(f"{name}: kernel {size}, impl {layer.impl}")
    layer_ms = forward_backward_ms(layer, x, repeats)
    generate_ms = generation_ms(layer, tuple(x.shape[2:]), repeats, x.device)
    dense_ms = forward_backward_ms(dense_step, x, repeats)
    log(f"{name}: layer {layer_ms:.1f} ms, generation {generate_ms:.1f} ms, dense conv {dense_ms:.1f} ms")
    return {
        "case": name,
        "input": list(x.shape),
        "kernel_size": list(size),
        "grid_size": list(layer.grid_size),
        "impl": layer.impl,
        "layer_ms": layer_ms,
        "generation_ms": generate_ms,
        "dense_conv_ms": dense_ms,
        "generation_share": generate_ms / layer_ms,
        "layer_over_dense": layer_ms / dense_ms,
    }


def layer_cases(args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    results = []
    width = 16 if args.quick else 48
    x2 = torch.randn(args.batch, width, 32, 32, device=device, requires_grad=True)
    for size in [5, 33] if args.quick else [5, 17, 33]:
        for impl in ("fft",) if args.quick and size == 33 else ("spatial", "fft") if size == 33 else ("spatial",):
            layer = FlexConv2d(width, width, 33, kernel_net=MAGNet, impl=impl).to(device)
            with torch.no_grad():
                layer.mask_sigma.fill_(0.075 if size == 5 else sigma_for_size(size, 33))
            results.append(layer_case(f"FlexConv2d {width}->{width}, 32x32, mask {size}x{size}, {impl}", layer, x2, args.repeats))
    x1 = torch.randn(args.batch, 30, 784, device=device, requires_grad=True)
    for impl in ("spatial",) if args.quick else ("spatial", "fft"):
        results.append(layer_case(f"FlexConv1d 30->30, L=784, initial mask, {impl}", FlexConv1d(30, 30, kernel_net=MAGNet, impl=impl).to(device), x1, args.repeats))
    if not args.quick:
        for impl in ("spatial", "fft"):
            results.append(layer_case(f"CKConv1d 30->30, L=784, whole sequence, {impl}", CKConv1d(30, 30, kernel_net=MAGNet, impl=impl).to(device), x1, args.repeats))
    return results


def crossover(args: argparse.Namespace, device: torch.device) -> dict:
    """Spatial vs FFT forward+backward per kernel size; the smallest size where the FFT wins."""
    torch.manual_seed(1)
    batch, width = min(args.batch, 16), 8 if args.quick else 24
    settings = {
        "2d": ((batch, width, 32, 32), [3, 17] if args.quick else [3, 5, 9, 13, 17, 25, 33, 49, 63]),
        "1d": ((batch, width, 784), [31, 255] if args.quick else [15, 31, 63, 127, 255, 511, 784]),
    }
    report = {}
    for dim, (shape, sizes) in settings.items():
        x = torch.randn(shape, device=device, requires_grad=True)
        rows = []
        for size in sizes:
            kernel = torch.randn(shape[1], shape[1], *([size] * (len(shape) - 2)), device=device, requires_grad=True)
            causal = dim == "1d"
            spatial = timed_ms(lambda: spatial_conv(x, kernel, causal=causal).sum().backward(), device, args.repeats)
            fft = timed_ms(lambda: fft_conv(x, kernel, causal=causal).sum().backward(), device, args.repeats)
            log(f"crossover {dim} k={size}: spatial {spatial:.1f} ms, fft {fft:.1f} ms")
            rows.append({"kernel_size": size, "spatial_ms": spatial, "fft_ms": fft})
        faster = [row["kernel_size"] for row in rows if row["fft_ms"] < row["spatial_ms"]]
        report[dim] = {"input": list(shape), "rows": rows, "fft_faster_from": min(faster) if faster else None}
    return report


def benchmark(args: argparse.Namespace, command: str) -> dict:
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    layers = layer_cases(args, device)
    cross = crossover(args, device)
    best_share = {}
    for row in layers:  # the share the automatic choice (the faster path) reaches per case
        key = row["case"].rsplit(",", 1)[0]
        if key not in best_share or row["layer_ms"] < best_share[key]["layer_ms"]:
            best_share[key] = row
    worst = max(row["generation_share"] for row in best_share.values())
    return {
        "command": command,
        "note": args.note,
        "arguments": {**vars(args), "out": str(args.out)},
        "machine": describe_machine(device),
        "layers": layers,
        "crossover": cross,
        "verdicts": {
            "generation_share_target": f"<= {TARGET_SHARE:.0%} of the layer's time at batch {args.batch}",
            "worst_generation_share_fastest_path": worst,
            "meets_target": worst <= TARGET_SHARE,
        },
        "wall_s": time.perf_counter() - started,
    }


def markdown_report(report: dict) -> str:
    machine = report["machine"]
    lines = [f"# FlexConv benchmark ({machine['summary']})", "", f"`{report['command']}`, {machine['date']}, {report['wall_s']:.0f} s."]
    if report["note"]:
        lines += ["", report["note"]]
    lines += ["", f"Forward + backward, median ms of {report['arguments']['repeats']} calls after a warm-up (a call over {SLOW_CALL_S:.0f} s: that one call). "
              "`dense conv` is `nn.ConvNd` with a dense kernel of the FlexConv's cropped size.", ""]  # fmt: skip
    lines += ["| case | kernel | layer | kernel generation | share | dense conv | layer / dense |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in report["layers"]:
        lines.append(
            f"| {row['case']} | {'x'.join(map(str, row['kernel_size']))} | {row['layer_ms']:.1f} | {row['generation_ms']:.1f} | "
            f"{row['generation_share']:.1%} | {row['dense_conv_ms']:.1f} | {row['layer_over_dense']:.2f} |"
        )
    verdict = report["verdicts"]
    lines += ["", f"Kernel generation, worst case over the layers at their faster path: {verdict['worst_generation_share_fastest_path']:.1%} "
              f"(target {verdict['generation_share_target']}: {'met' if verdict['meets_target'] else 'NOT met'})."]  # fmt: skip
    for dim, part in report["crossover"].items():
        lines += ["", f"FFT/spatial crossover, {dim}, input {part['input']} (forward + backward, ms):", "", "| kernel | spatial | fft |", "|---:|---:|---:|"]
        lines += [f"| {row['kernel_size']} | {row['spatial_ms']:.1f} | {row['fft_ms']:.1f} |" for row in part["rows"]]
        lines += ["", f"FFT faster from kernel size {part['fft_faster_from']}." if part["fft_faster_from"] else "FFT never faster in this range."]
    return "\n".join(lines) + "\n"


def run(quick: bool, device: str) -> dict:
    """The benchmark as `python -m benchmarks` calls it: the report, nothing written."""
    return benchmark(parse_args([*(["--quick"] if quick else []), "--device", device]), f"benchmarks.flexconv.run(quick={quick}, device={device!r})")


def main() -> None:
    args = parse_args()
    report = benchmark(args, " ".join(["python", *sys.argv]))
    markdown = markdown_report(report)
    device_type = torch.device(args.device).type
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"flexconv_{device_type}{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"flexconv_{device_type}{suffix}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
