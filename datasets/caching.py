"""Small helpers for the files datamodules cache (generated data, label statistics)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch


def save_atomically(value: Any, path: Path) -> None:
    """`torch.save` through a temporary file and a rename: readers never see half a file.

    Raises `OSError` when the folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(value, temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
