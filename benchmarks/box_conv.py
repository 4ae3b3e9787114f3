"""Benchmark: `BoxConv2d` against a depthwise `conv2d` with the equivalent dense box kernel.

For each box size `s`, every one of the `C*F` boxes is `s x s`, centred on the output
pixel, with its edges 0.25 px inside the pixel grid (`x_min = -((s-1)/2 - 0.25)`,
`x_max = (s-1)/2 - 0.25`): the box spans `s` pixels and weighs the outer ones by 0.75, so
the exact mode evaluates fractional weights, and the dense kernel is exactly `s x s`.

Three paths run forward + backward of `out.sum()` on the same input (which requires a
gradient): the `BoxConv2d` layer (train mode, box gradients), the dense baseline
(`nn.Conv2d(C, C*F, s, groups=C)` whose trainable weight is the `box_kernel` of the same
boxes) and, with `--impl auto`, the layer's pure-PyTorch reference kernels. Before timing,
the box and dense outputs are checked to agree. With a built checkout of shrubb/box-convolutions
outside the repository (`benchmarks/references.py`), the authors' `BoxConv2d` with the same
boxes is a fourth path (its output checked against ours first); without one the column is
skipped and the report says why. Reported: median forward (no grad) and
forward+backward latency, peak memory of forward+backward, and the dense/box ratios.

    python benchmarks/box_conv.py --device cpu --out benchmarks/results

writes `box_conv_<device>.json` and `box_conv_<device>.md` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.agreement import exact_float32  # noqa: E402
from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.references import load_reference  # noqa: E402
from engine.profiling import median_ms, peak_memory_mb  # noqa: E402
from layers.box import BoxConv2d, box_conv2d, box_conv2d_dense, box_kernel, extension  # noqa: E402

EDGE_INSET = 0.25  # box edges sit this far inside the pixel grid: fractional border weights
TARGET_SIZE, TARGET_SPEEDUP = 33, 5.0  # the dense path should be >= 5x slower at size 33
GROWTH_TOLERANCE = 1.25  # box time "does not grow" when no larger box takes more than this times a smaller one
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Largest |box - dense| allowed, as a fraction of the largest |dense output|.
AGREEMENT_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}
PATH_LABELS = {"box": "box", "reference": "box (reference)", "dense": "dense conv2d", "authors": "shrubb/box-convolutions"}
RATIO_LABELS = {
    "dense_over_box_fwd_bwd": "dense/box fwd+bwd",
    "dense_over_box_fwd": "dense/box forward",
    "dense_over_box_peak_mb": "dense/box memory",
    "reference_over_box_fwd_bwd": "reference/box fwd+bwd",
    "authors_over_box_fwd_bwd": "authors/box fwd+bwd",
    "authors_over_box_fwd": "authors/box forward",
}

_START = time.perf_counter()


@dataclass
class Timing:
    ms: float  # median latency
    repeats: int  # timed calls
    warmup: int  # untimed calls before them (0: one cold call)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[9, 33, 65], help="box sizes (odd, >= 3)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--filters", type=int, default=4, help="boxes per input channel")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help="input (and dense kernel) dtype; box coordinates stay float32"
    )
    parser.add_argument("--impl", choices=("auto", "reference", "extension"), default="auto", help="BoxConv2d kernels")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of the box paths")
    parser.add_argument("--dense-repeats", type=int, default=3, help="timed calls of the dense path")
    parser.add_argument(
        "--dense-sizes", type=int, nargs="*", default=None,
        help="box sizes at which the dense path is timed (default: all); a dense 65x65 depthwise conv takes minutes per call on a CPU",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (>= 1)")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds one latency measurement may take; slower paths get fewer calls, down to one"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for box_conv_<device>.json and .md")
    args = parser.parse_args(argv)
    if any(size < 3 or size % 2 == 0 for size in args.sizes):
        parser.error(f"--sizes {args.sizes}: box sizes must be odd and >= 3 (a centred s x s kernel)")
    if min(args.batch, args.channels, args.filters, args.height, args.width, args.repeats, args.dense_repeats, args.warmup) < 1:
        parser.error("--batch, --channels, --filters, --height, --width, --repeats, --dense-repeats and --warmup must be >= 1")
    if args.dense_sizes is None:
        args.dense_sizes = list(args.sizes)
    if not set(args.dense_sizes) <= set(args.sizes):
        parser.error(f"--dense-sizes {args.dense_sizes}: must be among --sizes {args.sizes}")
    if args.budget <= 0:
        parser.error(f"--budget {args.budget}: must be > 0 seconds")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.0f} s] {message}", flush=True)


def box_layer(size: int, args: argparse.Namespace, impl: str, device: torch.device) -> BoxConv2d:
    """A train-mode `BoxConv2d` whose boxes are all `size x size` (see the module docstring).

    `max_input` is the image size, so the clipping of the training forward keeps the
    boxes; this is checked, and a size the layer would clip stops the run.
    """
    layer = BoxConv2d(args.channels, args.filters, args.height, args.width, impl=impl).to(device).train()
    half = torch.full((args.channels, args.filters), (size - 1) / 2 - EDGE_INSET)
    layer.set_box_coordinates(-half, half, -half, half)
    requested = [coordinate.detach().clone() for coordinate in layer.box_coordinates()]
    layer.clip_()
    if not all(torch.equal(before, after) for before, after in zip(requested, layer.box_coordinates())):
        raise SystemExit(f"box size {size}: BoxConv2d clips these boxes for a {args.height}x{args.width} input; choose smaller sizes")
    return layer


def authors_layer(layer: BoxConv2d) -> tuple[nn.Module | None, str]:
    """shrubb/box-convolutions' `BoxConv2d` (built in a checkout outside the repository, see
    `benchmarks/references.py`) with `layer`'s boxes, or `(None, why not)`."""
    module, where = load_reference("box-convolutions", "box_convolution")
    if module is None:
        return None, where
    try:
        theirs = module.BoxConv2d(layer.in_planes, layer.num_filters, layer.max_input_h, layer.max_input_w,
                                  layer.reparametrization_factor, normalize=layer.normalize)  # fmt: skip
        theirs.exact = layer.exact
        with torch.no_grad():
            for name, value, scale in zip(("x_min", "x_max", "y_min", "y_max"), layer.box_coordinates(), 2 * [theirs.reparametrization_h] + 2 * [theirs.reparametrization_w]):
                getattr(theirs, name).copy_(value / scale)  # they store coordinates divided by max_input * factor
    except Exception as error:  # an incompatible checkout: skip the column, say why
        return None, f"cannot build their layer from {where}: {type(error).__name__}: {error}"
    return theirs.to(next(layer.parameters()).device).train(layer.training), where


def dense_conv(layer: BoxConv2d, dtype: torch.dtype) -> nn.Conv2d:
    """The depthwise `nn.Conv2d` whose trainable weight is the dense kernel of `layer`'s boxes."""
    with torch.no_grad():
        kernel = box_kernel(*layer.box_coordinates(), normalize=layer.normalize, exact=layer.exact)
    height, width = kernel.shape[-2:]
    conv = nn.Conv2d(
        layer.in_planes, kernel.shape[0], (height, width), padding=(height // 2, width // 2),
        groups=layer.in_planes, bias=False, device=kernel.device, dtype=dtype,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(kernel)
    return conv


def check_agreement(box: BoxConv2d, x: Tensor, size: int) -> float:
    """Largest `|box - dense|` over the largest `|dense|` for the box layer's own boxes, on the
    first image and two channels (the dense path is too slow for more at large sizes; the
    math is the same for every image and channel). Stops the run above the tolerance."""
    with exact_float32(), torch.no_grad():
        coordinates = [coordinate[:2] for coordinate in box.box_coordinates()]
        sample = x[:1, :2]
        expected = box_conv2d_dense(sample, *coordinates, normalize=box.normalize, exact=box.exact).float()
        error = float((box_conv2d(sample, *coordinates, normalize=box.normalize, exact=box.exact, impl=box.impl).float() - expected).abs().max() / expected.abs().max())
    tolerance = AGREEMENT_TOLERANCE[x.dtype]
    if not error <= tolerance:
        raise SystemExit(f"box size {size}: box and dense outputs differ by {error:.2e} of the largest output (tolerance {tolerance:.0e})")
    return error


def timed(step: Callable[[], object], device: torch.device, warmup: int, repeats: int, budget_s: float) -> Timing:
    """Median latency of `step` over `repeats` calls after `warmup` (>= 1), within `budget_s`.

    The first call is the first warm-up and prices one call. When the rest would overrun
    the budget, the other warm-ups are dropped, then timed calls; when not even one more
    call fits, that (cold) first call is the measurement.
    """
    first_ms = median_ms(step, device, warmup=0, repeats=1)
    affordable = int(budget_s * 1e3 // first_ms) - 1  # calls that fit after the first
    if affordable < 1:
        return Timing(first_ms, 1, 0)
    timed_calls = min(repeats, affordable)
    extra_warmup = min(warmup - 1, affordable - timed_calls)
    return Timing(median_ms(step, device, extra_warmup, timed_calls), timed_calls, 1 + extra_warmup)


def measure_path(module: nn.Module, x: Tensor, warmup: int, repeats: int, budget_s: float, label: str) -> dict:
    """Forward (no grad) and forward+backward latency and forward+backward peak memory."""

    def forward() -> None:
        with torch.no_grad():
            module(x)

    def forward_backward() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    log(f"{label}: forward")
    fwd = timed(forward, x.device, warmup, repeats, budget_s)
    log(f"{label}: forward {fwd.ms:.2f} ms, {_runs(asdict(fwd))}; forward+backward")
    fwd_bwd = timed(forward_backward, x.device, warmup, repeats, budget_s)
    log(f"{label}: forward+backward {fwd_bwd.ms:.2f} ms, {_runs(asdict(fwd_bwd))}; peak memory")
    x.grad = None
    module.zero_grad(set_to_none=True)  # the measured step then frees nothing allocated before it
    peak_mb = peak_memory_mb(forward_backward, x.device)
    log(f"{label}: peak memory {peak_mb:.1f} MB")
    return {"fwd": asdict(fwd), "fwd_bwd": asdict(fwd_bwd), "peak_mb": peak_mb}


def run_size(size: int, args: argparse.Namespace, x: Tensor) -> dict:
    """All paths at one box size, after checking that box and dense agree."""
    box = box_layer(size, args, args.impl, x.device)
    paths: dict[str, nn.Module] = {"box": box}
    if size in args.dense_sizes:
        paths["dense"] = dense_conv(box, x.dtype)
    if args.impl == "auto":
        paths["reference"] = box_layer(size, args, "reference", x.device)
    log(f"size {size}: checking that box and dense outputs agree")
    error = check_agreement(box, x, size)
    result = {
        "size": size,
        "kernel": [size, size],
        "box_extent_px": size - 2 * EDGE_INSET,
        "agreement_error": error,  # max |box - dense| / max |dense|
        "paths": {},
    }
    theirs, result["authors_source"] = authors_layer(box)
    if theirs is not None:
        with torch.no_grad():
            expected = box(x).float()
            result["authors_agreement_error"] = float((theirs(x).float() - expected).abs().max() / expected.abs().max())
        if result["authors_agreement_error"] <= AGREEMENT_TOLERANCE[x.dtype]:
            paths["authors"] = theirs
        else:
            result["authors_source"] += f" (skipped: outputs differ from ours by {result['authors_agreement_error']:.2e} of the largest)"
    for name, module in paths.items():
        repeats = args.dense_repeats if name == "dense" else args.repeats
        result["paths"][name] = measure_path(module, x, args.warmup, repeats, args.budget, f"size {size} {PATH_LABELS[name]}")
    measured = result["paths"]
    result["ratios"] = {}
    if "dense" in measured:
        result["ratios"] = {
            "dense_over_box_fwd_bwd": measured["dense"]["fwd_bwd"]["ms"] / measured["box"]["fwd_bwd"]["ms"],
            "dense_over_box_fwd": measured["dense"]["fwd"]["ms"] / measured["box"]["fwd"]["ms"],
            "dense_over_box_peak_mb": measured["dense"]["peak_mb"] / measured["box"]["peak_mb"],
        }
    if "reference" in measured:
        result["ratios"]["reference_over_box_fwd_bwd"] = measured["reference"]["fwd_bwd"]["ms"] / measured["box"]["fwd_bwd"]["ms"]
    if "authors" in measured:
        result["ratios"]["authors_over_box_fwd_bwd"] = measured["authors"]["fwd_bwd"]["ms"] / measured["box"]["fwd_bwd"]["ms"]
        result["ratios"]["authors_over_box_fwd"] = measured["authors"]["fwd"]["ms"] / measured["box"]["fwd"]["ms"]
    return result


def resolved_impl(impl: str, device: torch.device) -> str:
    """The kernels `impl` runs on `device` (builds the extension on first use)."""
    if impl == "reference":
        return "reference"
    return "extension" if extension.available(device, required=impl == "extension") else "reference"


def verdicts(results: list[dict]) -> dict[str, str]:
    """One line per target of the issue, from the measured forward+backward latencies."""
    by_size = {result["size"]: result for result in results}
    if TARGET_SIZE in by_size and "dense_over_box_fwd_bwd" in by_size[TARGET_SIZE]["ratios"]:
        ratio = by_size[TARGET_SIZE]["ratios"]["dense_over_box_fwd_bwd"]
        speedup = f"{'yes' if ratio >= TARGET_SPEEDUP else 'no'} ({ratio:.1f}x dense/box forward+backward)"
    else:
        speedup = f"not measured (the dense path was not timed at size {TARGET_SIZE})"
    ordered = sorted(results, key=lambda result: result["size"])
    times = [result["paths"]["box"]["fwd_bwd"]["ms"] for result in ordered]
    if len(times) > 1:
        growth = max(times[later] / times[earlier] for earlier in range(len(times)) for later in range(earlier + 1, len(times)))
        sizes = ", ".join(str(result["size"]) for result in ordered)
        flat = (
            f"{'yes' if growth <= GROWTH_TOLERANCE else 'no'} (largest ratio of a larger box's time to a smaller box's "
            f"{growth:.2f} over sizes {sizes}; allowed <= {GROWTH_TOLERANCE})"
        )
    else:
        flat = "not measured (needs two sizes or more)"
    return {f">= {TARGET_SPEEDUP:g}x at size {TARGET_SIZE}": speedup, "box time does not grow with box size": flat}


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _runs(timing: dict) -> str:
    return f"{timing['repeats']} (+{timing['warmup']} warm-up)"


def measurement_table(results: list[dict]) -> list[str]:
    lines = [
        "| box size | kernel | path | forward ms | forward+backward ms | peak MB (fwd+bwd) | runs forward | runs fwd+bwd |",
        "|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for result in results:
        kernel = "x".join(map(str, result["kernel"]))
        if "dense" not in result["paths"]:
            lines.append(f"| {result['size']} | {kernel} | {PATH_LABELS['dense']} | not measured (--dense-sizes) | | | | |")
        for name, path in result["paths"].items():
            lines.append(
                f"| {result['size']} | {kernel} | {PATH_LABELS[name]} | {_ms(path['fwd']['ms'])} | {_ms(path['fwd_bwd']['ms'])} "
                f"| {path['peak_mb']:.1f} | {_runs(path['fwd'])} | {_runs(path['fwd_bwd'])} |"
            )
    return lines


def ratio_table(results: list[dict]) -> list[str]:
    names = [name for name in RATIO_LABELS if any(name in result["ratios"] for result in results)]
    lines = ["| box size | " + " | ".join(RATIO_LABELS[name] for name in names) + " |", "|---:|" + "---:|" * len(names)]
    for result in results:
        cells = [f"{result['ratios'][name]:.2f}" if name in result["ratios"] else "not measured" for name in names]
        lines.append(f"| {result['size']} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(report: dict) -> str:
    args, machine = report["arguments"], report["machine"]
    lines = [
        f"# BoxConv2d vs dense depthwise conv2d ({args['device']})",
        "",
        f"Written by `{report['command']}` on {machine['date']}: {machine['summary']} "
        f"({machine['torch_threads']} torch threads).",
        f"Input {args['batch']}x{args['channels']}x{args['height']}x{args['width']} {args['dtype']}, {args['filters']} boxes per channel, "
        f"box kernels `{args['impl']}` (ran: {report['box_impl']}). Boxes: s x s, edges {EDGE_INSET} px inside the pixel grid "
        f"(exact mode, fractional border weights); dense kernel s x s. Latency is the median over the runs listed; forward "
        f"is without grad, forward+backward computes the input gradient and the box (or kernel weight) gradients of `out.sum()`.",
        "",
        "## Targets",
        "",
        *(f"- {target}: {verdict}" for target, verdict in report["verdicts"].items()),
        "",
        "## Measurements",
        "",
        f"Authors' layer (shrubb/box-convolutions): {report['results'][0]['authors_source'] if report['results'] else 'n/a'}.",
        "",
        *measurement_table(report["results"]),
        "",
        "## Ratios",
        "",
        *ratio_table(report["results"]),
        "",
    ]
    return "\n".join(lines)


# `run(quick=True)`: small enough for the suite's --quick (well under a minute on 2 CPU cores).
QUICK_ARGUMENTS = [
    "--sizes", "9", "33", "--batch", "2", "--channels", "16", "--height", "64", "--width", "128",
    "--repeats", "3", "--dense-repeats", "1", "--warmup", "1", "--budget", "5",
]  # fmt: skip


def benchmark(args: argparse.Namespace, command: str) -> dict:
    """Every size and path for `args`; the report that `main` writes (see the module docstring)."""
    device = torch.device(args.device)
    log(f"preparing the box kernels for {device} (the first use compiles the extension)")
    box_impl = resolved_impl(args.impl, device)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, args.channels, args.height, args.width)
    x = torch.randn(shape, generator=generator).to(device, DTYPES[args.dtype]).requires_grad_()
    started = time.perf_counter()
    results = [run_size(size, args, x) for size in args.sizes]
    return {
        "command": command,
        "arguments": {**vars(args), "out": str(args.out)},
        "box_impl": box_impl,
        "machine": describe_machine(device),
        "settings": {"edge_inset_px": EDGE_INSET, "growth_tolerance": GROWTH_TOLERANCE, "agreement_tolerance": AGREEMENT_TOLERANCE[x.dtype]},
        "results": results,
        "verdicts": verdicts(results),
        "wall_s": time.perf_counter() - started,
    }


def run(quick: bool, device: str) -> dict:
    """The benchmark as `python -m benchmarks` calls it: the report, nothing written."""
    argv = [*(QUICK_ARGUMENTS if quick else []), "--device", device]
    if not quick and device == "cpu":
        argv += ["--dense-sizes", "9", "33"]  # a dense 65x65 forward takes minutes on a CPU (see README)
    return benchmark(parse_args(argv), f"benchmarks.box_conv.run(quick={quick}, device={device!r})")


def main() -> None:
    args = parse_args()
    report = benchmark(args, " ".join(["python", *sys.argv]))
    markdown = markdown_report(report)
    device_type = torch.device(args.device).type
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"box_conv_{device_type}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"box_conv_{device_type}.md").write_text(markdown)
    print()
    print(markdown)
    log(f"wrote {args.out / f'box_conv_{device_type}.json'} and .md")


if __name__ == "__main__":
    main()
