"""Forward + backward throughput of whole models, each beside its plain baseline.

A model case (`benchmarks.registry.ModelCase`) is built exactly as
`run_profiler.py net=<net> dataset=<dataset> conv=<conv>` builds it (`engine.nets.build_net`)
and measured by the same code (`engine.profiling.measure`): parameters, MACs per sample,
forward (eval, no grad) and forward + backward (train) latency, and the peak memory of one
training step. Throughput is `batch / forward+backward time`.
"""

from __future__ import annotations

import torch

from benchmarks.registry import ModelCase
from engine.cli import compose
from engine.nets import build_net
from engine.profiling import measure

QUICK_TIMING = {"batch_size": 1, "warmup": 1, "repeats": 3}
FULL_TIMING = {"batch_size": 2, "warmup": 2, "repeats": 5}


def measure_model(case: ModelCase, device: str, quick: bool) -> dict:
    """The cost of one model case, or `{"status": "failed", "error": ...}` when it cannot be built or run."""
    timing = QUICK_TIMING if quick else FULL_TIMING
    try:
        cfg = compose([f"net={case.net}", f"dataset={case.dataset}", f"conv={case.conv}", *case.overrides])
        net = build_net(cfg)
        input_shape = (cfg.dataset.in_channels, *cfg.dataset.input_size)
        cost = measure(net, input_shape, timing["batch_size"], torch.device(device), timing["warmup"], timing["repeats"])
    except Exception as error:  # reported in the results, never hidden
        return {"status": "failed", "error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}", **_identity(case)}
    return {
        "status": "ok",
        **_identity(case),
        **cost.as_dict(),
        **timing,
        "images_per_s": timing["batch_size"] / (cost.fwd_bwd_ms / 1e3),
    }


def _identity(case: ModelCase) -> dict:
    return {"label": case.label, "net": case.net, "dataset": case.dataset, "conv": case.conv, "baseline": case.baseline, "overrides": list(case.overrides)}


def add_ratios(rows: list[dict]) -> None:
    """Set `ratio_fwd_bwd` and `ratio_peak_mb` (model / its baseline, same run) in place."""
    by_label = {row["label"]: row for row in rows}
    for row in rows:
        base = by_label.get(row["baseline"]) if row["baseline"] else None
        if row["status"] == "ok" and base is not None and base["status"] == "ok":
            row["ratio_fwd_bwd"] = row["fwd_bwd_ms"] / base["fwd_bwd_ms"]
            row["ratio_peak_mb"] = row["peak_mem_mb"] / base["peak_mem_mb"] if base["peak_mem_mb"] > 0 else None
