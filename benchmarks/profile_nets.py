"""Profile several nets on one dataset's input shape and write a results table.

    python benchmarks/profile_nets.py --dataset cityscapes \
        --nets enet boxenet boxonlyenet enet_minus erfnet boxerfnet --device cpu

Each net is built from its Hydra config exactly as `run_profiler.py net=<net>
dataset=<dataset>` builds it, and measured with the same code (`engine.profiling`):
parameters, MACs per sample, forward and forward+backward latency, peak memory.
Writes `<out>/nets_<dataset>_<device>.json` and `.md` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe_machine  # noqa: E402
from engine.cli import compose  # noqa: E402
from engine.profiling import format_count, measure  # noqa: E402


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", required=True, help="net config names (cfg/net/)")
    parser.add_argument("--dataset", required=True, help="dataset config name whose input shape is used")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides, e.g. dataset.num_classes=20")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    device = torch.device(args.device)
    rows = []
    for net_name in args.nets:
        cfg = compose([f"net={net_name}", f"dataset={args.dataset}", *args.overrides])
        input_shape = (cfg.dataset.in_channels, *cfg.dataset.input_size)
        cost = measure(instantiate(cfg.net), input_shape, args.batch_size, device, args.warmup, args.repeats)
        rows.append({"net": net_name, **cost.as_dict()})
        print(f"{net_name:>12}: {cost.params:>10,} params  {format_count(cost.macs):>8} MACs  "
              f"fwd {cost.fwd_ms:8.1f} ms  fwd+bwd {cost.fwd_bwd_ms:8.1f} ms  peak {cost.peak_mem_mb:8.1f} MB", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"nets_{args.dataset}_{args.device}"
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": describe_machine(device), "settings": settings, "results": rows}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown_table(report))
    print(f"wrote {stem}.json and {stem}.md")


def markdown_table(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    lines = [
        f"# Nets on `{settings['dataset']}` inputs, {settings['device']}",
        "",
        f"Measured by `benchmarks/profile_nets.py` on {machine['date']}: {machine['summary']}.",
        f"Batch {settings['batch_size']}, median of {settings['repeats']} runs after {settings['warmup']} warm-up runs; "
        f"overrides: {' '.join(settings['overrides']) or 'none'}.",
        "",
        "| net | parameters | MACs / sample | input | forward (ms) | forward+backward (ms) | peak memory (MB) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['net']} | {row['params']:,} | {format_count(row['macs'])} | {'x'.join(map(str, row['input_shape']))} | "
            f"{row['fwd_ms']:.1f} | {row['fwd_bwd_ms']:.1f} | {row['peak_mem_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
