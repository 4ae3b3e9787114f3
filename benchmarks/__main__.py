"""`python -m benchmarks [--quick] [--only box,dcls] [--device cpu]`: the whole suite (`benchmarks.suite`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.registry import FAMILIES, select
from benchmarks.suite import run_suite

DEVICES = ("cpu", "cuda")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (< 5 minutes on 2 CPU cores)")
    parser.add_argument("--only", default=None, help=f"comma-separated families among {', '.join(family.name for family in FAMILIES)} (default: all)")
    parser.add_argument("--device", action="append", choices=DEVICES, help="repeatable (default: cpu, and cuda when present)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile mode (default: inductor)")
    parser.add_argument("--no-models", action="store_true", help="skip the model throughput section")
    parser.add_argument("--note", default="", help="written at the top of the results, e.g. that the machine was shared")
    parser.add_argument("--tag", default="", help="appended to the file names: <device>-<date>-<tag>.*")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for <device>-<date>.json/.md/.png (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if args.tag and not args.tag.replace("-", "").replace("_", "").isalnum():
        parser.error(f"--tag {args.tag!r}: letters, digits, - and _ only")
    try:
        args.families = select(args.only)
    except ValueError as error:
        parser.error(str(error))
    args.device = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if "cuda" in args.device and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    run_suite(args.families, args.device, args.quick, args.out, command, args.compile_backend, not args.no_models, args.note, args.tag)


if __name__ == "__main__":
    main()
