"""`make gpu-check` (`python -m benchmarks.gpu_check`): every `-m cuda` test, then the quick
benchmark suite on the GPU, with their results in `benchmarks/results/`.

On a machine without a CUDA device it prints one line and exits with status 1, running nothing.
With one, in this order (each step a child process, so one that crashes still lets the other run):

1. `pytest -m cuda tests`: the CUDA kernels and layers against their references; the first
   test builds the CUDA extensions with the toolkit of `layers._build.cuda_home` (about a
   minute). Its report goes to `<out>/cuda-<date>-gpu-check-tests.md`.
2. `python -m benchmarks --quick --device cuda --tag gpu-check`: the suite's
   `<out>/cuda-<date>-gpu-check.{json,md,png}`.

Exit status 0 when both steps succeed. Each step has a hard time limit (`--limit-s`), so a
hang ends the check instead of holding the machine; the whole check is meant to take under
8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gpu_name() -> str | None:
    """The first CUDA device's name, or None when torch sees no CUDA device."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def child_environment() -> dict[str, str]:
    """This environment, with `CUDA_HOME` naming the toolkit the extensions build with (torch
    itself would take the `/usr/local` of an `nvcc` wrapper in `/usr/local/bin`)."""
    from layers._build import cuda_home

    environment = dict(os.environ)
    toolkit = cuda_home()
    if toolkit is not None:
        environment["CUDA_HOME"] = toolkit
    return environment


def run_step(command: list[str], limit_s: float, environment: dict[str, str]) -> tuple[int, str, float]:
    """`(exit status, stdout + stderr, seconds)`; status 124 when the step ran past `limit_s`.
    The output is echoed as it comes, so a long step shows its progress."""
    print(f"gpu-check: $ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def echo() -> None:
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        status = process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        status = 124
    reader.join(timeout=10)
    if status == 124:
        lines.append(f"gpu-check: stopped after {limit_s:.0f} s (--limit-s)\n")
    return status, "".join(lines), time.perf_counter() - started


def tests_report(device: str, command: list[str], status: int, output: str, seconds: float) -> str:
    """The test step as Markdown: what ran where, its verdict and pytest's own summary."""
    import torch

    from layers._build import cuda_home

    summary = [line for line in output.splitlines() if line.strip()][-60:]
    return "\n".join([
        f"# `-m cuda` tests on {device}, {datetime.date.today().isoformat()}",
        "",
        f"Written by `make gpu-check` (`python -m benchmarks.gpu_check`): `{' '.join(command)}` in {seconds:.0f} s; "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), extensions built with the toolkit in `{cuda_home()}`; "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"Result: {'passed' if status == 0 else f'FAILED (exit status {status})'}.",
        "",
        "```",
        *summary,
        "```",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the results")
    parser.add_argument("--limit-s", type=float, default=600.0, help="hard time limit of each step, seconds")
    args = parser.parse_args(argv)
    device = gpu_name()
    if device is None:
        print("gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing was run", flush=True)
        return 1
    started = time.perf_counter()
    environment = child_environment()
    print(f"gpu-check: {device}; CUDA toolkit for the extensions: {environment.get('CUDA_HOME', 'none found')}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"cuda-{datetime.date.today().isoformat()}-gpu-check"

    tests = [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-rfEs", "-p", "no:cacheprovider"]
    status, output, seconds = run_step(tests, args.limit_s, environment)
    report = stem.with_name(stem.name + "-tests.md")
    report.write_text(tests_report(device, tests, status, output, seconds))
    print(f"gpu-check: tests {'passed' if status == 0 else 'FAILED'} in {seconds:.0f} s; wrote {report}", flush=True)

    suite = [sys.executable, "-m", "benchmarks", "--quick", "--device", "cuda", "--tag", "gpu-check", "--out", str(args.out)]
    suite_status, _, suite_seconds = run_step(suite, args.limit_s, environment)
    print(f"gpu-check: benchmarks {'done' if suite_status == 0 else 'FAILED'} in {suite_seconds:.0f} s; results in {stem}.*", flush=True)

    total = time.perf_counter() - started
    passed = status == 0 and suite_status == 0
    print(f"gpu-check: {'passed' if passed else 'FAILED'} in {total:.0f} s (tests {seconds:.0f} s, benchmarks {suite_seconds:.0f} s)", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
