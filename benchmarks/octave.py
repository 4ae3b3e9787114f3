"""Benchmark: Oct-ResNet-50 against ResNet-50, forward + backward, in the same run
(Chen et al., "Drop an Octave", arXiv:1904.05049, Table 2's speed claim).

Nets: torchvision's `resnet50()` (the baseline every time ratio is against), this
repository's ResNet-50 (`models.resnet.ResNet`, a second baseline column), Oct-ResNet-50 at
each `--alphas` (`models.oct_resnet.OctResNet`, built as `run_profiler.py net=oct_resnet50
net.alpha=<a>` builds it) and, when a checkout is installed outside the repository
(`benchmarks/references.py`), d-li14/octconv.pytorch's `oct_resnet50` (alpha 0.5). For each:
the MACs of one 224 x 224 sample (`engine.profiling.count_macs`) and the time of one
training step (forward + backward of `out.sum()`, train mode) on a batch in the default
memory format. The nets are timed interleaved, one step each in turn for `--repeats` rounds
(`benchmarks/timing.py`), once with one torch thread and once with all (`--threads`); a ratio
is the median over rounds of the per-round ratio. Each step is timed on two clocks: wall
time, and this process's CPU time. OpenMP waits between parallel regions as the environment
says (`OMP_WAIT_POLICY`, recorded with the results), as it does for users: unset, idle
threads spin a while before they sleep. On a CPU shared with other jobs, run with
`OMP_WAIT_POLICY=PASSIVE` so that idle threads sleep at once and CPU time measures the work
rather than the spinning; that costs a net of many small operations (an Oct-ResNet) more
wall time at several threads than one of fewer, larger ones (measured: alpha 0.5 at 2
threads, 0.928x torchvision's ResNet-50 with PASSIVE, 0.726x with ACTIVE, on a quiet machine).

    python benchmarks/octave.py --device cpu --note "..." --out benchmarks/results

writes `octave_<device>.json` and `octave_<device>.md` (`octave_<device>_quick.*` with
`--quick`: batch 1 at 96 x 96, alpha 0.5, 2 rounds; about a minute on a 2-core CPU).
"""

from __future__ import annotations

import os

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.references import load_reference  # noqa: E402
from benchmarks.timing import ratio  # noqa: E402
from engine.profiling import count_macs  # noqa: E402
from models.oct_resnet import OctResNet  # noqa: E402
from models.resnet import ResNet  # noqa: E402

RESNET50 = dict(in_channels=3, num_classes=1000, block="bottleneck", layers=[3, 4, 6, 3], widths=[64, 128, 256, 512], stem="imagenet")
BASELINE, OURS_PLAIN, AUTHORS = "torchvision ResNet-50", "ResNet-50 (ours)", "d-li14 Oct-ResNet-50 a=0.5"
# time / torchvision ResNet-50's at all threads, batch 4 at 224: (alpha, at most)
TARGETS = {"cpu": ((0.5, 0.70), (0.25, 0.90)), "cuda": ((0.25, 1.0),)}


def log(message: str) -> None:
    print(f"[octave benchmark] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="batch 1 at 96x96, alpha 0.5 only, 2 rounds")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 32 on GPU (1 with --quick)")
    parser.add_argument("--size", type=int, default=None, help="input height = width (default 224; 96 with --quick)")
    parser.add_argument("--alphas", type=float, nargs="+", default=None, help="default: 0.125 0.25 0.5 0.75 (0.5 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch CPU thread counts, one timed pass each (default: 1 and all cores on CPU)")  # fmt: skip
    parser.add_argument("--note", default="", help="written at the top of the results, e.g. that the machine was shared")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    args.batch = args.batch or (1 if args.quick else 32 if gpu else 4)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args.threads = args.threads or ([torch.get_num_threads()] if gpu else sorted({1, cores}))
    args.size = args.size or (96 if args.quick else 224)
    args.alphas = args.alphas or ([0.5] if args.quick else [0.125, 0.25, 0.5, 0.75])
    args.repeats = args.repeats or (2 if args.quick else 5)
    if min(args.batch, args.size, args.repeats, *args.threads) < 1 or args.warmup < 0:
        parser.error(f"--batch={args.batch}, --size={args.size}, --repeats={args.repeats}, --threads={args.threads} must be >= 1")
    if not all(0 < alpha < 1 for alpha in args.alphas):
        parser.error(f"--alphas={args.alphas}: every alpha must be in (0, 1)")
    return args


def build_nets(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, nn.Module], str]:
    """The nets by label, baseline first, and where the authors' port came from (or why it is absent)."""
    builders = {BASELINE: torchvision.models.resnet50, OURS_PLAIN: lambda: ResNet(**RESNET50)}
    builders.update({f"Oct-ResNet-50 a={alpha}": (lambda alpha=alpha: OctResNet(alpha, **RESNET50)) for alpha in args.alphas})
    authors, source = load_reference("octconv.pytorch", "oct_resnet")
    if authors is not None:
        builders[AUTHORS] = authors.oct_resnet50
    nets = {}
    for label, build in builders.items():
        torch.manual_seed(0)
        nets[label] = build().to(device).train()
    return nets, source


def time_nets(nets: dict[str, nn.Module], x: torch.Tensor, warmup: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """`{label: {"wall": [ms per round], "cpu": [...]}}`, the nets taking turns in every round."""
    cuda = x.device.type == "cuda"
    times = {label: {"wall": [], "cpu": []} for label in nets}
    for round_index in range(warmup + repeats):
        labels = list(nets)
        labels = labels[round_index % len(labels) :] + labels[: round_index % len(labels)]
        for label in labels:
            net = nets[label]
            net.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(x.device)
            wall, cpu = time.perf_counter(), time.process_time()
            net(x).sum().backward()
            if cuda:
                torch.cuda.synchronize(x.device)
            if round_index >= warmup:
                times[label]["wall"].append((time.perf_counter() - wall) * 1e3)
                times[label]["cpu"].append((time.process_time() - cpu) * 1e3)
        log(f"round {round_index + 1}/{warmup + repeats}")
    return times


def benchmark(args: argparse.Namespace, command: str) -> dict:
    device = torch.device(args.device)
    threads_before = torch.get_num_threads()
    nets, authors_source = build_nets(args, device)
    macs = {label: count_macs(net, torch.randn(1, 3, 224, 224, device=device)) for label, net in nets.items()}
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    started, passes = time.perf_counter(), []
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            load = os.getloadavg()[0]
            log(f"{threads} thread(s): {len(nets)} nets, {args.warmup} + {args.repeats} rounds")
            times = time_nets(nets, x, args.warmup, args.repeats)
            rows = []
            for label, measured in times.items():
                row = {"net": label, "macs": macs[label], "mac_ratio": macs[label] / macs[BASELINE]}
                for clock in ("wall", "cpu"):
                    row[f"{clock}_ms"] = statistics.median(measured[clock])
                    row[f"{clock}_ratio"] = ratio(measured[clock], times[BASELINE][clock])
                    row[f"{clock}_ratio_ours"] = ratio(measured[clock], times[OURS_PLAIN][clock])
                row["rounds"] = measured
                rows.append(row)
            passes.append({"threads": threads, "load_average_1min": {"before": load, "after": os.getloadavg()[0]}, "rows": rows})
    finally:
        torch.set_num_threads(threads_before)
    return {"command": command, "arguments": {**vars(args), "out": str(args.out)}, "machine": describe_machine(device),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "authors_source": authors_source, "passes": passes,
            "verdicts": verdicts(passes, device, args), "wall_s": time.perf_counter() - started}  # fmt: skip


def verdicts(passes: list[dict], device: torch.device, args: argparse.Namespace) -> list[str]:
    """One line per target at the most threads measured, on both clocks; and against the authors' port."""
    final = max(passes, key=lambda one: one["threads"])
    rows = {row["net"]: row for row in final["rows"]}
    lines = []
    shape = f"batch {args.batch} at {args.size}, {final['threads']} threads"
    for alpha, bound in TARGETS["cuda" if device.type == "cuda" else "cpu"]:
        row = rows.get(f"Oct-ResNet-50 a={alpha}")
        if row is None:
            lines.append(f"alpha {alpha} <= {bound}x torchvision ResNet-50: not measured")
            continue
        met = {clock: row[f"{clock}_ratio"] <= bound for clock in ("wall", "cpu")}
        lines.append(f"alpha {alpha} <= {bound}x torchvision ResNet-50 ({shape}): wall {row['wall_ratio']:.3f}x "
                     f"({'met' if met['wall'] else 'NOT met'}), CPU time {row['cpu_ratio']:.3f}x ({'met' if met['cpu'] else 'NOT met'})")  # fmt: skip
    ours, theirs = rows.get("Oct-ResNet-50 a=0.5"), rows.get(AUTHORS)
    if ours is not None and theirs is not None:
        lines.append(f"alpha 0.5 at least as fast as d-li14's port: ours/theirs wall {ours['wall_ms'] / theirs['wall_ms']:.3f}, "
                     f"CPU time {ours['cpu_ms'] / theirs['cpu_ms']:.3f} (medians)")  # fmt: skip
    return lines


def markdown_report(report: dict) -> str:
    args, machine = report["arguments"], report["machine"]
    lines = [
        f"# Octave convolution: Oct-ResNet-50 vs ResNet-50 ({machine['summary']})",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {machine['date']}; batch {args['batch']} at {args['size']}x{args['size']}, default memory format, forward + backward "
        f"(train mode), {args['repeats']} interleaved rounds after {args['warmup']} warm-up, OMP_WAIT_POLICY={report['omp_wait_policy'] or 'unset (OpenMP default)'}; "
        f"d-li14 port: {report['authors_source']}. Ratios: median over rounds of the per-round ratio to torchvision's ResNet-50 "
        "(`x tv`) and to this repository's ResNet-50 (`x ours`).  ",
    ]
    if args["note"]:
        lines.append(f"Note: {args['note']}")
    for one in report["passes"]:
        load = one["load_average_1min"]
        loaded = " (loaded machine: load above 2.5 on these cores)" if max(load.values()) > 2.5 else ""
        lines += [
            "", f"## {one['threads']} torch thread(s); 1-minute load average {load['before']:.1f} before, {load['after']:.1f} after{loaded}", "",
            "| net | GMACs (224) | MAC ratio | wall ms | wall x tv | wall x ours | CPU ms | CPU x tv | CPU x ours |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for r in one["rows"]:
            lines.append(f"| {r['net']} | {r['macs'] / 1e9:.3f} | {r['mac_ratio']:.3f} | {r['wall_ms']:.0f} | {r['wall_ratio']:.3f} | "
                         f"{r['wall_ratio_ours']:.3f} | {r['cpu_ms']:.0f} | {r['cpu_ratio']:.3f} | {r['cpu_ratio_ours']:.3f} |")  # fmt: skip
    lines += ["", "Targets:", *(f"- {line}" for line in report["verdicts"]), "", f"Wall time of the timed part: {report['wall_s']:.0f} s", ""]
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
