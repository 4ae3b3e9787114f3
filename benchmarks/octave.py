"""Benchmark: Oct-ResNet-50 against ResNet-50, forward + backward, in the same run
(Chen et al., "Drop an Octave", arXiv:1904.05049, Table 2's speed claim).

Every net is built as `run_profiler.py net=oct_resnet50 net.alpha=<a> dataset=imagenet`
builds it (`ResNet` converted by `convert_to_octave`); the baseline is the plain ResNet-50.
For each net: the MACs of one 224 x 224 sample (`engine.profiling.count_macs`) and the time
of one training step (forward + backward of `out.sum()`, train mode) on a batch. The nets
are timed interleaved, one step each in turn for `--repeats` rounds, so that all see the
same load on a shared machine; a net's time ratio is the median over rounds of its step
time divided by the baseline's step time of the same round.

The sweep runs in `--memory-format` (default `channels_last`, the faster layout for both
nets on CPU; the baseline uses the same). Variants on top of it (`--variants`): `reference`
(the four-convolution `OctaveConv` path instead of the fused one, at the middle alpha) and
`other_format` (ResNet-50 and the middle alpha in the other memory format, against a
baseline in that format).

On CPU the default is one torch thread: on a machine shared with other jobs, a step run with
several OpenMP threads stalls at every parallel region whose threads are not all scheduled,
so its time measures the load more than the net (the octave nets, with more and smaller
kernels, suffer more); `--threads` overrides it.

    python benchmarks/octave.py --device cpu --note "..." --out benchmarks/results

writes `octave_<device>.json` and `octave_<device>.md` (`octave_<device>_quick.*` with
`--quick`: batch 1 at 96 x 96, alpha 0.5, 2 rounds; under a minute on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from engine.profiling import count_macs  # noqa: E402
from models.oct_resnet import OctResNet  # noqa: E402
from models.resnet import ResNet  # noqa: E402

RESNET50 = dict(in_channels=3, num_classes=1000, block="bottleneck", layers=[3, 4, 6, 3], widths=[64, 128, 256, 512], stem="imagenet")
TARGET = {"cpu": ("alpha 0.5 takes <= 0.62x ResNet-50's time", 0.5, 0.62), "cuda": ("alpha >= 0.25 no slower than ResNet-50", 0.25, 1.0)}


def log(message: str) -> None:
    print(f"[octave benchmark] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="batch 1 at 96x96, alpha 0.5 only, 2 rounds")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 32 on GPU (1 with --quick)")
    parser.add_argument("--size", type=int, default=None, help="input height = width (default 224; 96 with --quick)")
    parser.add_argument("--alphas", type=float, nargs="+", default=None, help="default: 0.125 0.25 0.5 0.75 (0.5 with --quick)")
    parser.add_argument("--memory-format", default="channels_last", choices=["channels_last", "contiguous"])
    parser.add_argument("--variants", nargs="*", default=None, choices=["reference", "other_format"],
                        help="extra cases (default: both; none with --quick)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU, see above)")
    parser.add_argument("--note", default="", help="written at the top of the results, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    args.batch = args.batch or (1 if args.quick else 32 if gpu else 4)
    args.threads = args.threads or (None if gpu else 1)
    args.size = args.size or (96 if args.quick else 224)
    args.alphas = args.alphas or ([0.5] if args.quick else [0.125, 0.25, 0.5, 0.75])
    args.variants = ([] if args.quick else ["reference", "other_format"]) if args.variants is None else args.variants
    args.repeats = args.repeats or (2 if args.quick else 5)
    if min(args.batch, args.size, args.repeats) < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error(f"--batch={args.batch}, --size={args.size}, --repeats={args.repeats}, --threads={args.threads} must be >= 1")
    if not all(0 < alpha < 1 for alpha in args.alphas):
        parser.error(f"--alphas={args.alphas}: every alpha must be in (0, 1)")
    return args


def build_cases(args: argparse.Namespace) -> list[dict]:
    """`[{label, alpha, impl, channels_last}]`: the baseline first, then the alpha sweep and the variants."""
    main_cl = args.memory_format == "channels_last"

    def fmt(channels_last: bool) -> str:
        return "channels_last" if channels_last else "contiguous"

    cases = [{"label": f"ResNet-50 ({fmt(main_cl)})", "alpha": 0.0, "impl": None, "channels_last": main_cl}]
    cases += [{"label": f"Oct-ResNet-50 a={a} ({fmt(main_cl)})", "alpha": a, "impl": "auto", "channels_last": main_cl} for a in args.alphas]
    middle = args.alphas[len(args.alphas) // 2] if len(args.alphas) > 1 else args.alphas[0]
    if "reference" in args.variants:
        cases.append({"label": f"Oct-ResNet-50 a={middle} ({fmt(main_cl)}, reference path)", "alpha": middle, "impl": "reference",
                      "channels_last": main_cl})  # fmt: skip
    if "other_format" in args.variants:
        cases.append({"label": f"ResNet-50 ({fmt(not main_cl)})", "alpha": 0.0, "impl": None, "channels_last": not main_cl})
        cases.append({"label": f"Oct-ResNet-50 a={middle} ({fmt(not main_cl)})", "alpha": middle, "impl": "auto", "channels_last": not main_cl})
    return cases


def build_net(case: dict, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    net = ResNet(**RESNET50) if case["impl"] is None else OctResNet(case["alpha"], impl=case["impl"], **RESNET50)
    net = net.to(device).train()
    return net.to(memory_format=torch.channels_last) if case["channels_last"] else net


def step_seconds(net: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    net(x).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def benchmark(args: argparse.Namespace, command: str) -> dict:
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cases = build_cases(args)
    nets = []
    for case in cases:
        net = build_net(case, device)
        case["macs"] = count_macs(net, torch.randn(1, 3, 224, 224, device=device))
        nets.append(net)
        log(f"{case['label']}: {case['macs'] / 1e9:.3f} GMACs at 224")
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    inputs = [x.contiguous(memory_format=torch.channels_last) if case["channels_last"] else x for case in cases]
    times: list[list[float]] = [[] for _ in cases]
    started = time.perf_counter()
    for round_index in range(args.warmup + args.repeats):
        order = list(range(len(cases)))
        order = order[round_index % len(order):] + order[: round_index % len(order)]  # no case always runs first
        for index in order:
            seconds = step_seconds(nets[index], inputs[index], device)
            if round_index >= args.warmup:
                times[index].append(seconds)
        log(f"round {round_index + 1}/{args.warmup + args.repeats} done ({time.perf_counter() - started:.0f} s)")
    baseline_of = {case["channels_last"]: index for index, case in reversed(list(enumerate(cases))) if case["impl"] is None}
    results = []
    for case, case_times in zip(cases, times):
        base = times[baseline_of[case["channels_last"]]]
        ratios = [mine / theirs for mine, theirs in zip(case_times, base)]
        results.append({**case, "step_ms": [t * 1e3 for t in case_times], "median_ms": statistics.median(case_times) * 1e3,
                        "time_ratio": statistics.median(ratios), "time_ratio_min": min(ratios), "time_ratio_max": max(ratios),
                        "mac_ratio": case["macs"] / cases[baseline_of[case["channels_last"]]]["macs"],
                        "baseline": cases[baseline_of[case["channels_last"]]]["label"]})  # fmt: skip
    return {"command": command, "arguments": {**vars(args), "out": str(args.out)}, "machine": describe_machine(device),
            "results": results, "verdict": verdict(results, device), "wall_s": time.perf_counter() - started}  # fmt: skip


def verdict(results: list[dict], device: torch.device) -> str:
    text, alpha, bound = TARGET["cuda" if device.type == "cuda" else "cpu"]
    relevant = [r for r in results if r["impl"] == "auto" and r["channels_last"] == results[0]["channels_last"] and r["alpha"] >= alpha and
                (device.type == "cuda" or r["alpha"] == alpha)]  # fmt: skip
    if not relevant:
        return f"{text}: not measured"
    worst = max(r["time_ratio"] for r in relevant)
    return f"{text}: {'met' if worst <= bound else 'NOT met'} (measured {worst:.3f}x)"


def markdown_report(report: dict) -> str:
    args, machine = report["arguments"], report["machine"]
    lines = [
        f"# Octave convolution: Oct-ResNet-50 vs ResNet-50 ({machine['summary']})",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {machine['date']}; torch threads: {machine['torch_threads']}; batch {args['batch']} at {args['size']}x{args['size']}, "
        f"forward + backward (train mode), {args['repeats']} interleaved rounds after {args['warmup']} warm-up; "
        "each ratio is against the ResNet-50 of the same memory format.  ",
    ]
    if args["note"]:
        lines.append(f"Note: {args['note']}")
    lines += [
        "",
        "| net | GMACs (224) | MAC ratio | median step (ms) | time ratio (median over rounds) | min-max over rounds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['label']} | {r['macs'] / 1e9:.3f} | {r['mac_ratio']:.3f} | {r['median_ms']:.0f} | {r['time_ratio']:.3f} | "
                     f"{r['time_ratio_min']:.3f}-{r['time_ratio_max']:.3f} |")  # fmt: skip
    lines += ["", f"Verdict: {report['verdict']}", f"Wall time of the timed part: {report['wall_s']:.0f} s", ""]
    return "\n".join(lines)


def run(quick: bool, device: str) -> dict:
    """The benchmark as `python -m benchmarks` calls it: the report, nothing written."""
    argv = [*(["--quick"] if quick else []), "--device", device]
    return benchmark(parse_args(argv), f"benchmarks.octave.run(quick={quick}, device={device!r})")


def main() -> None:
    args = parse_args()
    report = benchmark(args, " ".join(["python", *sys.argv]))
    device_type = torch.device(args.device).type
    stem = f"octave_{device_type}{'_quick' if args.quick else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = markdown_report(report)
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)
    log(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
