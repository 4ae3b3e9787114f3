"""Describe the machine a benchmark ran on (written next to every result)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> dict:
    """CPU model and cores, torch version, the GPU when `device` is CUDA, and the date."""
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    info["summary"] = f"{info.get('gpu', info['cpu'])}, {info['cpu_cores']} CPU cores, torch {info['torch']}"
    return info
