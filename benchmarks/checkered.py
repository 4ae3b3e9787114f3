"""Benchmark: the stride-2 `CheckeredConv2d` against the authors' layer and the four-convolution form, and CCNNs.

Layer paths, each forward + backward of `out.sum()` on the same `(N, C, S, H, W)` input (3x3,
C -> C, naive sampler, the same weights): `ours` (`CheckeredConv2d`, stride 2: one strided
channels-last 2-D convolution per kept group), `authors` (ShayanPersonal/checkered-cnn's
`CheckeredConv2d`, when a checkout is installed outside the repository, see
`benchmarks/references.py`: four strided 3-D convolutions, half of them thrown away),
`four_conv` (the same computation in this repository, `layers/checkered/reference.py`) and
`conv2d_s1` (a plain stride-1 `nn.Conv2d` on the same `N * S` maps: the full-resolution cost
checkered subsampling avoids). Every path's output is checked against ours first. The paths
are timed interleaved (one call of each per round), and each ratio is the median over rounds
of the per-round ratio, so a load that changes during the run affects both sides alike.
Nets: `resnet18_cifar` against its CCNN (`conv=checkered`), built by `engine.nets.build_net`,
MACs and latency from `engine.profiling`. Sadigh & Sen, arXiv 1805.10766.

    python benchmarks/checkered.py --device cpu [--quick] --out benchmarks/results

writes `checkered_<device>.json` and `checkered_<device>.md` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.agreement import exact_float32  # noqa: E402
from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.references import load_reference  # noqa: E402
from benchmarks.timing import interleaved, ratio  # noqa: E402
from engine.profiling import measure, peak_memory_mb  # noqa: E402
from layers.checkered import CheckeredConv2d, checkered_conv2d_reference, offset_groups  # noqa: E402

# The authors' layer runs four strided 3-D convolutions and the backward of the two it keeps:
# (4 forward + 2 backward) against our (2 + 2) in multiply-accumulates, ~1.33x in forward +
# backward (a backward costs ~2 forwards); the target asks for more, from the cheaper form.
TARGET_SPEEDUP = 1.8
TARGET_SHAPES = [(32, 64, 2, 32), (8, 128, 2, 56)]  # (N, C, S, H = W), two submaps
LAYER_CASES = {  # (N, C, S, H) with C -> C channels, 3x3 kernel
    "full": [*TARGET_SHAPES, (16, 64, 4, 16)],
    "quick": [(8, 32, 2, 16)],
}
AGREEMENT = 1e-4  # largest |path - ours| / largest |ours| (float32)
NETS = {"full": ("resnet18_cifar", 8, 5), "quick": ("resnet18_tiny", 2, 2)}  # net, batch, repeats


class _FourConvolutions(nn.Module):
    def __init__(self, layer: CheckeredConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        sampling = offset_groups("naive", x.shape[2])
        return checkered_conv2d_reference(x, self.layer.weight, self.layer.bias, stride=2, padding=self.layer.padding, sampling=sampling)


class _PerSubmapConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.transpose(1, 2).flatten(0, 1))


def authors_layer(ours: CheckeredConv2d) -> tuple[nn.Module | None, str]:
    """ShayanPersonal/checkered-cnn's stride-2 `CheckeredConv2d` with our weights, or `(None, why)`."""
    module, where = load_reference("checkered-cnn", "checkered_layers")
    if module is None:
        return None, where
    theirs = module.CheckeredConv2d(ours.in_channels, ours.out_channels, ours.kernel_size[0], stride=2, padding=ours.padding[0])
    with torch.no_grad():
        theirs.conv.weight.copy_(ours.weight.unsqueeze(2))
        theirs.conv.bias.copy_(ours.bias)
    return theirs.to(ours.weight.device), where


def layer_case(n: int, channels: int, submaps: int, size: int, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    ours = CheckeredConv2d(channels, channels, 3, stride=2, padding=1).to(device)
    x = torch.randn(n, channels, submaps, size, size, device=device, requires_grad=True)
    modules: dict[str, nn.Module] = {"ours": ours}
    theirs, authors_source = authors_layer(ours)
    if theirs is not None:
        modules["authors"] = theirs
    modules["four_conv"] = _FourConvolutions(ours)
    case: dict = {"shape": [n, channels, submaps, size, size], "authors_source": authors_source, "max_rel_difference": {}}
    with exact_float32(), torch.no_grad():
        expected = ours(x)
        for name, module in modules.items():
            error = ((module(x) - expected).abs().max() / expected.abs().max()).item()
            if error > AGREEMENT:
                raise RuntimeError(f"{name} and ours differ by {error:.2e} of the largest output at {case['shape']}")
            case["max_rel_difference"][name] = error
    modules["conv2d_s1"] = _PerSubmapConv(channels).to(device)

    def training_step(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()

        return step

    def forward(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                module(x)

        return step

    fwd_bwd = interleaved({name: training_step(module) for name, module in modules.items()}, device, repeats, warmup=2, cpu_time=True)
    fwd = interleaved({name: forward(module) for name, module in modules.items()}, device, repeats, warmup=2, cpu_time=True)
    case["paths"] = {
        name: {"fwd_ms": statistics.median(fwd[name]), "fwd_bwd_ms": statistics.median(fwd_bwd[name]),
               "peak_mb": peak_memory_mb(training_step(module), device)}
        for name, module in modules.items()
    }  # fmt: skip
    case["clock"] = "process CPU time" if device.type == "cpu" else "wall"
    for name in modules:
        if name != "ours":
            case[f"{name}_over_ours"] = ratio(fwd_bwd[name], fwd_bwd["ours"])
            case[f"{name}_over_ours_fwd"] = ratio(fwd[name], fwd["ours"])
    return case


def net_case(net: str, batch: int, repeats: int, device: torch.device) -> dict:
    from engine.cli import compose
    from engine.nets import build_net

    result = {}
    for conv in ("standard", "checkered"):
        torch.manual_seed(0)
        model = build_net(compose([f"net={net}", "dataset=cifar10", f"conv={conv}"]))
        result[conv] = measure(model, (3, 32, 32), batch, device, warmup=1, repeats=repeats).as_dict()
    result["macs_ratio"] = result["checkered"]["macs"] / result["standard"]["macs"]
    result["fwd_bwd_ratio"] = result["checkered"]["fwd_bwd_ms"] / result["standard"]["fwd_bwd_ms"]
    return {"net": net, "batch": batch, **result}


def run(quick: bool, device: str, threads: int | None = None) -> dict:
    """The benchmark as `python -m benchmarks` calls it: the report, nothing written."""
    target = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    mode = "quick" if quick else "full"
    repeats = 3 if quick else 11
    layers = [layer_case(*case, target, repeats) for case in LAYER_CASES[mode]]
    net, batch, net_repeats = NETS[mode]
    targeted = [case for case in layers if tuple(case["shape"][:4]) in {(n, c, s, h) for n, c, s, h in TARGET_SHAPES}] or layers
    with_authors = [case["authors_over_ours"] for case in targeted if "authors_over_ours" in case]
    worst = min(with_authors) if with_authors else None
    return {
        "benchmark": "checkered",
        "command": f"benchmarks.checkered.run(quick={quick}, device={device!r}, threads={threads})",
        "machine": describe_machine(target),
        # Other jobs sharing the CPU make every timing an upper bound; the ratios are from one run.
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "layers": layers,
        "net": net_case(net, batch, net_repeats, target),
        "target": {"authors_over_ours_at_least": TARGET_SPEEDUP, "shapes": [case["shape"] for case in targeted],
                   "worst_measured": worst, "met": None if worst is None else worst >= TARGET_SPEEDUP,
                   "authors_source": layers[0]["authors_source"]},
    }  # fmt: skip


def _cell(path: dict | None, key: str) -> str:
    return "n/a" if path is None else f"{path[key]:.2f}"


def _ratio(case: dict, key: str) -> str:
    return f"{case[key]:.2f}x" if key in case else "n/a"


def markdown_report(report: dict) -> str:
    machine = report["machine"]
    target = report["target"]
    lines = [
        "# Checkered subsampling benchmark", "",
        f"`{report['command']}` on {machine['summary']}, {machine['torch_threads']} torch thread(s), {machine['date']}.", "",
        f"1-minute load average {report['load_average_1min']['before']:.1f} before, {report['load_average_1min']['after']:.1f} after "
        f"(on {machine.get('cpu_cores', '?')} cores: above that, the machine was shared; the ratios come from interleaved rounds).", "",
        "Stride-2 checkered convolution (3x3, C -> C, naive sampler, same weights), forward + backward of `out.sum()`, median "
        f"{report['layers'][0]['clock']} per call; `authors` is ShayanPersonal/checkered-cnn's layer ({target['authors_source']}).", "",
        "| (N, C, S, H, W) | ours fwd+bwd ms | authors fwd+bwd ms | four-conv fwd+bwd ms | stride-1 conv2d fwd+bwd ms "
        "| authors / ours | four-conv / ours | authors / ours fwd | ours MB | authors MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for case in report["layers"]:
        p = case["paths"]
        authors = p.get("authors")
        lines.append(
            f"| {tuple(case['shape'])} | {p['ours']['fwd_bwd_ms']:.2f} | {_cell(authors, 'fwd_bwd_ms')} | {p['four_conv']['fwd_bwd_ms']:.2f} "
            f"| {p['conv2d_s1']['fwd_bwd_ms']:.2f} | {_ratio(case, 'authors_over_ours')} | {_ratio(case, 'four_conv_over_ours')} "
            f"| {_ratio(case, 'authors_over_ours_fwd')} | {p['ours']['peak_mb']:.1f} | {_cell(authors, 'peak_mb')} |"
        )
    if target["worst_measured"] is None:
        verdict = f"not measured: the authors' layer is {target['authors_source']}"
    else:
        verdict = f"worst {target['worst_measured']:.2f}x ({'met' if target['met'] else 'NOT met'})"
    net = report["net"]
    lines += [
        "", f"Target: authors / ours >= {target['authors_over_ours_at_least']}x forward + backward at {', '.join(str(tuple(s)) for s in target['shapes'])}: "
        f"{verdict}. The authors' layer runs the backward of only the two convolutions it keeps, so in multiply-accumulates forward + "
        "backward differ by only ~1.33x; the rest comes from the faster form (channels-last 2-D convolutions, no padded copies).", "",
        f"Net `{net['net']}` (CIFAR 32x32, batch {net['batch']}): CNN vs CCNN (`conv=checkered`), wall time", "",
        "| | params | MACs / sample | fwd ms | fwd+bwd ms | peak MB |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for conv in ("standard", "checkered"):
        c = net[conv]
        lines.append(f"| {conv} | {c['params']:,} | {c['macs'] / 1e6:.1f} M | {c['fwd_ms']:.1f} | {c['fwd_bwd_ms']:.1f} | {c['peak_mem_mb']:.1f} |")
    lines += ["", f"CCNN / CNN: MACs {net['macs_ratio']:.2f}x, fwd+bwd {net['fwd_bwd_ratio']:.2f}x.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="one small layer case and a tiny net (< 1 minute on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for checkered_<device>.json and .md")
    args = parser.parse_args()
    report = run(args.quick, args.device, args.threads)
    markdown = markdown_report(report)
    device_type = torch.device(args.device).type
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"checkered_{device_type}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"checkered_{device_type}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
