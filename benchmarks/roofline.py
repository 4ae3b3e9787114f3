"""Memory bandwidth of the device, measured in the same run, and how close the box
convolution comes to it (a roofline check: the box op does few operations per byte, so
memory traffic, not arithmetic, bounds it).

Bandwidth comes from two simple kernels on a buffer much larger than the caches:
`dst.copy_(src)` (reads and writes every byte: 2 x size moved) and `src.sum()` (reads
every byte once). The box forward moves at least its input (read) and its output
(written); the backward (input and box gradients of a given output gradient, the op's own
backward called directly) at least the output gradient and the input (read) and the input
gradient (written). Those compulsory bytes, divided by the measured time, are the first
count. The second adds the float32 integral images of the input, `(B, C, H+1, W+1)`, and,
for the backward, of every gradient plane, `(B, C*F, H+1, W+1)`, each written and read once:
what the integral-image algorithm moves when its images go through memory, as the CUDA
kernels' do. The CPU kernels keep each plane's integral image in cache, so for them only the
first count is traffic.

Two timings of each direction: the op as a layer calls it (`op`: every call allocates its
outputs, and on CPU the first touch of a fresh allocation of tens of MB costs page faults
worth as much as the kernel itself), and the compiled kernels alone writing into buffers
allocated once (`kernels`), as the copy kernel writes into an existing buffer: the
kernels' bandwidth, which is what the copy bandwidth bounds.

`python -m benchmarks.roofline` runs it at both shapes (the suite's quick one and the full
one, the second four times the first's batch and twice its channels), several interleaved
rounds each, and writes `box_roofline_<device>.{json,md}`: the median of the rounds and their
range, each round against the bandwidth measured just before it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402

from engine.profiling import median_ms  # noqa: E402
from layers.box import BoxConv2d, extension  # noqa: E402

GB = 1e9


def measure_bandwidth(device: str, quick: bool) -> dict:
    """`{"copy_gb_s", "sum_gb_s", "buffer_mb"}` from median timings of copy and sum kernels."""
    dev = torch.device(device)
    numel = (32 if quick else 128) * 2**20  # float32: 128 MB / 512 MB, beyond any cache
    src = torch.ones(numel, device=dev)
    dst = torch.empty_like(src)
    repeats = 5 if quick else 20
    copy_ms = median_ms(lambda: dst.copy_(src), dev, warmup=2, repeats=repeats)
    sum_ms = median_ms(lambda: src.sum(), dev, warmup=2, repeats=repeats)
    size = numel * src.element_size()
    return {
        "buffer_mb": size / 2**20,
        "copy_ms": copy_ms,
        "sum_ms": sum_ms,
        "copy_gb_s": 2 * size / GB / (copy_ms / 1e3),
        "sum_gb_s": size / GB / (sum_ms / 1e3),
        "repeats": repeats,
    }


def box_roofline(quick: bool, device: str) -> dict:
    """Box forward and backward against the bandwidth measured just before them.

    Returns the shape, the forward and backward times of the op and of its kernels alone
    (see the module docstring), the bytes moved by the two counts of the module docstring,
    the bandwidth they imply and its fraction of the measured copy and sum bandwidth.
    """
    dev = torch.device(device)
    batch, channels, filters, height, width = (2, 32, 4, 128, 256) if quick else (8, 64, 4, 128, 256)
    bandwidth = measure_bandwidth(device, quick)
    layer = BoxConv2d(channels, filters, height, width).to(dev).eval()
    x = torch.randn(batch, channels, height, width, device=dev)
    grad = torch.randn(batch, channels * filters, height, width, device=dev)
    coordinates = [coordinate.detach() for coordinate in layer.box_coordinates()]
    steps = {
        "op": {
            "forward": lambda: torch.ops.farconv.box_conv2d(x, *coordinates, 1, 1, layer.normalize, layer.exact, layer.impl),
            "backward": lambda: torch.ops.farconv.box_conv2d_backward(grad, x, *coordinates, 1, 1, layer.normalize, layer.exact,
                                                                      layer.impl, True, True),
        },
    }  # fmt: skip
    kernels = extension.library(dev)
    if kernels is not None:
        edges, mirrored, scale = extension.kernel_arguments(x, tuple(coordinates), layer.normalize, layer.exact)
        out, grad_input = x.new_empty(grad.shape), torch.empty_like(x)
        totals = x.new_empty(5, channels, filters)

        def forward_kernels() -> None:
            kernels.box_sums_out(x, edges, scale, 1, 1, layer.exact, out)

        def backward_kernels() -> None:
            kernels.box_backward_out(x, grad, edges, mirrored, scale, 1, 1, layer.exact, grad_input, totals)

        steps["kernels"] = {"forward": forward_kernels, "backward": backward_kernels}
        if dev.type == "cpu":
            steps[SINGLE_THREAD] = steps["kernels"]
    repeats = 5 if quick else 20
    element = x.element_size()
    planes, output_planes, plane, integral_plane = batch * channels, batch * channels * filters, height * width, (height + 1) * (width + 1)
    moved = {
        "forward": {
            "compulsory": (planes + output_planes) * plane * element,
            "with_integral_image": (planes + output_planes) * plane * element + 2 * planes * integral_plane * 4,
        },
        "backward": {
            "compulsory": (2 * planes + output_planes) * plane * element,
            "with_integral_image": (2 * planes + output_planes) * plane * element + 2 * (planes + output_planes) * integral_plane * 4,
        },
    }  # fmt: skip
    result = {
        "shape": {"batch": batch, "channels": channels, "filters": filters, "height": height, "width": width, "dtype": str(x.dtype)},
        "bandwidth": bandwidth,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "build": None if kernels is None else kernels.__name__,  # names its instruction set
    }
    threads = torch.get_num_threads()
    with torch.no_grad():
        for path, directions in steps.items():
            result[path] = {}
            for direction, step in directions.items():
                torch.set_num_threads(1 if path == SINGLE_THREAD else threads)
                try:
                    ms = median_ms(step, dev, warmup=2, repeats=repeats)
                finally:
                    torch.set_num_threads(threads)
                result[path][direction] = {"ms": ms}
                for count, size in moved[direction].items():
                    achieved = size / GB / (ms / 1e3)
                    result[path][direction][count] = {
                        "bytes": size,
                        "gb_s": achieved,
                        "of_copy_bandwidth": achieved / bandwidth["copy_gb_s"],
                        "of_sum_bandwidth": achieved / bandwidth["sum_gb_s"],
                    }
    return result


# The timed paths: the op as a layer calls it, its kernels alone, and (on CPU) the kernels on
# one thread: a pass bound by memory bandwidth gains little from a second thread, one bound by
# its arithmetic about 2x.
SINGLE_THREAD = "kernels_1_thread"
PATHS = {"op": "op", "kernels": "kernels", SINGLE_THREAD: "kernels, 1 thread"}
COUNTS = {"compulsory": "inputs read, outputs written", "with_integral_image": "+ float32 integral images, as if written and read"}


def summarize(rounds: list[dict]) -> dict:
    """Per path, pass and byte count: the median and range over rounds of the time and of the
    fraction of each round's own copy bandwidth."""
    summary = {}
    for path in PATHS:
        if path not in rounds[0]:
            continue
        for direction in ("forward", "backward"):
            times = [r[path][direction]["ms"] for r in rounds]
            entry = {"ms": statistics.median(times), "ms_range": [min(times), max(times)]}
            for count in COUNTS:
                fractions = [r[path][direction][count]["of_copy_bandwidth"] for r in rounds]
                entry[count] = {"of_copy_bandwidth": statistics.median(fractions), "range": [min(fractions), max(fractions)]}
            summary[f"{path} {direction}"] = entry
    return summary


def markdown_report(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"# Box convolution against the memory bandwidth ({report['device']})",
        "",
        f"Written by `{report['command']}` on {machine['date']}: {machine['summary']} ({machine['torch_threads']} torch threads); "
        f"compiled kernels `{report['build']}`; 1-minute load average {report['load_start']:.1f} at the start, {report['load_end']:.1f} at the end.",
        f"{report['rounds']} interleaved rounds per shape; each measures the copy bandwidth (a 128 MB / 512 MB float32 buffer), "
        "then the box forward (no grad) and backward (input and box gradients), median of the round's repeats. `op`: as a layer "
        "calls it (fresh outputs each call); `kernels`: the compiled kernels alone into buffers allocated once; `kernels, 1 thread`: "
        "the same on one thread (a pass bound by memory bandwidth gains little from more threads, one bound by its arithmetic "
        "gains about their number). Fractions are of the round's own copy bandwidth (read + write, all threads); the table gives "
        "the median over rounds and the range.",
        "",
    ]
    for name, shape in report["shapes"].items():
        dims = shape["rounds"][0]["shape"]
        copies = [r["bandwidth"]["copy_gb_s"] for r in shape["rounds"]]
        lines += [
            f"## {name}: {dims['batch']}x{dims['channels']}x{dims['height']}x{dims['width']}, {dims['filters']} boxes per channel",
            "",
            f"Copy bandwidth {min(copies):.1f}-{max(copies):.1f} GB/s over the rounds.",
            "",
            "| path | pass | ms (median) | ms (range) | of copy bandwidth, inputs read + outputs written | range "
            "| with the integral images, as if through memory | range |",
            "|---|---|---:|---|---:|---|---:|---|",
        ]
        for key, entry in shape["summary"].items():
            path, direction = key.split()
            compulsory, integral = entry["compulsory"], entry["with_integral_image"]
            lines.append(
                f"| {PATHS[path]} | {direction} | {entry['ms']:.2f} | {entry['ms_range'][0]:.2f}-{entry['ms_range'][1]:.2f} "
                f"| {100 * compulsory['of_copy_bandwidth']:.1f}% | {100 * compulsory['range'][0]:.1f}-{100 * compulsory['range'][1]:.1f}% "
                f"| {100 * integral['of_copy_bandwidth']:.1f}% | {100 * integral['range'][0]:.1f}-{100 * integral['range'][1]:.1f}% |"
            )  # fmt: skip
        summary = shape["summary"]
        if f"{SINGLE_THREAD} forward" in summary:
            speedups = {d: summary[f"{SINGLE_THREAD} {d}"]["ms"] / summary[f"kernels {d}"]["ms"] for d in ("forward", "backward")}
            lines += ["", f"Kernels from 1 to {report['threads']} threads: forward {speedups['forward']:.2f}x, backward {speedups['backward']:.2f}x faster."]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per shape")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    load_start = os.getloadavg()[0]
    shapes = {"quick shape": [], "full shape": []}
    for _ in range(args.rounds):
        for name, rounds in shapes.items():
            rounds.append(box_roofline(quick=name == "quick shape", device=args.device))
            print(f"[roofline] {name}: round {len(rounds)} of {args.rounds}", file=sys.stderr, flush=True)
    device = torch.device(args.device)
    report = {
        "command": " ".join(["python -m benchmarks.roofline", *sys.argv[1:]]),
        "device": device.type,
        "machine": describe_machine(device),
        "build": shapes["quick shape"][0]["build"],
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "shapes": {name: {"summary": summarize(rounds), "rounds": rounds} for name, rounds in shapes.items()},
    }
    stem = args.out / f"box_roofline_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = markdown_report(report)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
