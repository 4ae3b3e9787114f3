"""`python -m benchmarks`: every family and model of `benchmarks.registry`, in one run per device.

For each device the suite measures, in this order, each step printed as it starts:

1. the device's memory bandwidth (`benchmarks.roofline.measure_bandwidth`);
2. one layer per family and the plain convolution, in float32, under bf16 autocast and
   under `torch.compile` (`benchmarks.probes`), with ratios to the plain layer;
3. each family's extra measurements (e.g. the box roofline) and its own benchmark
   (`run(quick, device)` of its module, kept whole in the JSON);
4. each family's models beside their plain baselines (`benchmarks.throughput`).

A step that fails is recorded with its error and the run goes on. Results go to
`<out>/<device>-<date>.json`, `.md` and `.png` (`benchmarks.report`).
"""

from __future__ import annotations

import datetime
import importlib
import os
import time
from pathlib import Path
from typing import Callable

import torch

from benchmarks import probes, report, throughput
from benchmarks.machine import describe_machine
from benchmarks.registry import STANDARD, Family, model_cases
from benchmarks.roofline import measure_bandwidth


class Progress:
    """Prints `[elapsed] [step/total] message` lines as the run goes."""

    def __init__(self, total: int, prefix: str = "") -> None:
        self.total, self.done, self.prefix = total, 0, prefix
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.done += 1
        print(f"[{time.perf_counter() - self.started:6.0f} s] [{self.done}/{self.total}] {self.prefix}{message}", flush=True)


def _call(target: str, *args: object) -> dict:
    """`resolve(target)(*args)` with its wall time; a failure (SystemExit included) becomes `{"status": "failed"}`."""
    started = time.perf_counter()
    threads = torch.get_num_threads()  # a benchmark may pin its own; the steps after it must not inherit that
    try:
        result = {"status": "ok", "result": resolve(target)(*args)}
    except (Exception, SystemExit) as error:
        result = {"status": "failed", "error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
    finally:
        torch.set_num_threads(threads)
    result["wall_s"] = time.perf_counter() - started
    return result


def resolve(name: str) -> Callable[..., dict]:
    """`"package.module:function"` (default function: `run`) -> the function."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function or "run")


def own_markdown(module_name: str, outcome: dict) -> str | None:
    """The family's own tables: its module's `markdown_report(result)`, when it has one."""
    module = importlib.import_module(module_name.partition(":")[0]) if outcome["status"] == "ok" else None
    write = getattr(module, "markdown_report", None)
    if write is None:
        return None
    try:
        return write(outcome["result"])
    except Exception as error:  # the figures stay in the JSON; only their table is lost
        return f"(its markdown_report failed: {type(error).__name__}: {error})"


def steps_for(families: list[Family], include_models: bool) -> int:
    layer_steps = (1 + len(families)) * len(probes.MODES)
    family_steps = sum(len(family.extras) + (family.benchmark is not None) for family in families)
    return 1 + layer_steps + family_steps + (len(model_cases(families)) if include_models else 0)


def run_device(
    families: list[Family], device: str, quick: bool, compile_backend: str = "inductor", include_models: bool = True, note: str = ""
) -> dict:
    """Measure everything for one device; returns the report (see the module docstring)."""
    progress = Progress(steps_for(families, include_models), prefix=f"{device}: ")
    shape = probes.QUICK_SHAPE if quick else probes.FULL_SHAPE
    load_before = os.getloadavg()
    started = time.perf_counter()
    progress("memory bandwidth (copy and sum kernels)")
    bandwidth = measure_bandwidth(device, quick)

    layers = {}
    for family in [STANDARD, *families]:
        layers[family.name] = {"conv": family.conv, "paper": family.paper, **probes.probe_family(family.conv, shape, device, compile_backend, progress)}
    probes.add_ratios(layers, baseline=STANDARD.name)

    own = {}
    for family in families:
        entry: dict = {"benchmark": family.benchmark, "extras": {}}
        for extra in family.extras:
            progress(f"{family.name}: {extra}")
            entry["extras"][extra] = _call(extra, quick, device)
        if family.benchmark is not None:
            progress(f"{family.name}: its own benchmark ({family.benchmark}.run)")
            entry["own_benchmark"] = _call(family.benchmark, quick, device)
            entry["own_benchmark"]["markdown"] = own_markdown(family.benchmark, entry["own_benchmark"])
        own[family.name] = entry

    models = []
    if include_models:
        for case in model_cases(families):
            progress(f"model {case.label} (net={case.net} dataset={case.dataset} conv={case.conv})")
            models.append(throughput.measure_model(case, device, quick))
        throughput.add_ratios(models)

    machine = describe_machine(torch.device(device))
    machine["load_average_1_5_15min"] = {"start": list(load_before), "end": list(os.getloadavg())}
    return {
        "machine": machine,
        "settings": {
            "device": device,
            "quick": quick,
            "families": [family.name for family in families],
            "precision": "float32 unless the column says bf16 autocast",
            "compile_backend": compile_backend,
            "layer_shape": shape.describe(),
            "layer_timing": {"warmup": shape.warmup, "repeats": shape.repeats},
            "model_timing": throughput.QUICK_TIMING if quick else throughput.FULL_TIMING,
            "note": note,
        },
        "bandwidth": bandwidth,
        "layers": layers,
        "families": own,
        "models": models,
        "wall_s": time.perf_counter() - started,
    }


def run_suite(
    families: list[Family], devices: list[str], quick: bool, out: Path, command: str,
    compile_backend: str = "inductor", include_models: bool = True, note: str = "", tag: str = "",
) -> list[Path]:  # fmt: skip
    """Run every device, write `<out>/<device>-<date>[-<tag>].{json,md,png}`; returns the files written."""
    written = []
    for device in devices:
        result = run_device(families, device, quick, compile_backend, include_models, note)
        result["command"] = command
        stem = out / "-".join([device, datetime.date.today().isoformat(), *([tag] if tag else [])])
        written += report.write(result, stem)
        print(f"{device}: wrote {', '.join(str(path) for path in written[-3:])}", flush=True)
    return written
