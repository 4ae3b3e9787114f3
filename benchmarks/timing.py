"""Interleaved timing: the paths of a comparison take turns, one call each per round, so a
load that comes and goes on a shared machine falls on all of them alike; a ratio is the
median over rounds of the per-round ratio, not a ratio of medians taken at different times."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def clock(device: torch.device, cpu_time: bool) -> Callable[[], float]:
    """Seconds: this process's CPU time (`cpu_time`, CPU only: on a CPU shared with other jobs,
    wall time measures the scheduler more than the code), else wall time, synchronising a GPU."""
    if device.type == "cpu":
        return time.process_time if cpu_time else time.perf_counter

    def wall() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return wall


def interleaved(
    steps: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1, cpu_time: bool = False
) -> dict[str, list[float]]:
    """Milliseconds of each step in each of `repeats` rounds (after `warmup` untimed rounds);
    within a round the steps take turns, starting one later each round."""
    now = clock(device, cpu_time)
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(repeats):
        names = list(steps)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            start = now()
            steps[name]()
            times[name].append((now() - start) * 1e3)
    return times


def ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of `numerator / denominator` (two lists from one `interleaved` call)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
