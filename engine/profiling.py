"""Cost of a net: parameters, multiply-accumulates, latency and peak memory.

MACs come from `torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2); custom ops of
`layers/` register their own formulas with it. Peak memory is exact on CUDA (the caching
allocator's high-water mark) and, on CPU, the high-water mark of the allocation records
of the PyTorch profiler. `conv_families` says which convolution families a built net
really contains, from the package of each module's class. With `repeats=0`, `measure`
counts only (parameters, MACs, families: one forward of one sample) and times nothing.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class NetCost:
    params: int
    macs: int  # multiply-accumulates for one sample
    input_shape: list[int]  # of one sample
    fwd_ms: float | None  # inference forward (eval mode, no grad), median; None: not timed
    fwd_bwd_ms: float | None  # training forward + backward, median; None: not timed
    peak_mem_mb: float | None  # peak memory of one training forward + backward; None: not measured
    device: str
    conv_families: dict[str, int] = field(default_factory=dict)  # family -> number of its modules

    def as_dict(self) -> dict:
        return asdict(self)


def count_parameters(net: nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


def conv_families(net: nn.Module) -> dict[str, int]:
    """The convolution families `net` contains: `{family: modules}`.

    A module belongs to family `f` when its class lives in the package `layers.f`, so a
    new family is found without being listed here; plain `torch.nn` convolutions count as
    `standard` unless they sit inside a module of a family (its internal parts).
    """
    counts: Counter[str] = Counter()
    family_prefixes: list[str] = []
    for name, module in net.named_modules():
        package = type(module).__module__.split(".")
        if package[0] == "layers" and len(package) > 2:
            counts[package[1]] += 1
            family_prefixes.append(f"{name}.")
        elif isinstance(module, nn.modules.conv._ConvNd) and not any(name.startswith(prefix) for prefix in family_prefixes):
            counts["standard"] += 1
    return dict(sorted(counts.items()))


def count_macs(net: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-accumulates of one inference forward pass on `sample` (batch included)."""
    was_training = net.training
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(sample)
    net.train(was_training)
    return counter.get_total_flops() // 2


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(step: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory_mb(step: Callable[[], object], device: torch.device) -> float:
    """Memory allocated at the high-water mark of `step`, above what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    records = [event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"]
    live = peak = 0
    for event in sorted(records, key=lambda event: event.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what native code writes to stderr: the profiler's tracing library (Kineto)
    prints trace stages and a CUDA device-count error even for CPU-only profiling."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(net: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device, warmup: int, repeats: int) -> NetCost:
    """Profile `net` on inputs of per-sample shape `input_shape`; `repeats=0`: counts only."""
    net = net.to(device)
    macs = count_macs(net, torch.randn(1, *input_shape, device=device))
    counts = (count_parameters(net), macs, list(input_shape))
    if repeats == 0:
        return NetCost(*counts, None, None, None, str(device), conv_families(net))
    batch = torch.randn(batch_size, *input_shape, device=device)

    def forward() -> None:
        with torch.no_grad():
            net(batch)

    def forward_backward() -> None:
        net.zero_grad(set_to_none=True)
        net(batch).float().sum().backward()

    net.eval()
    fwd_ms = median_ms(forward, device, warmup, repeats)
    net.train()
    fwd_bwd_ms = median_ms(forward_backward, device, warmup, repeats)
    net.zero_grad(set_to_none=True)  # the measured step then frees nothing allocated before it
    peak = peak_memory_mb(forward_backward, device)
    return NetCost(*counts, fwd_ms, fwd_bwd_ms, peak, str(device), conv_families(net))


def format_count(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)
