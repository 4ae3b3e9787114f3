"""Atomic file writes for everything the framework must never leave half-written:
checkpoints, the metrics a resumed run rewrites, and the files datamodules cache."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Iterator

import torch


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", **open_options: Any) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; when the block ends without an
    error the file is flushed, synced to disk and renamed onto `path`, so readers (and a
    run killed at any moment) see either the old file or the whole new one.

    Raises `OSError` when the folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, mode, **open_options) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_atomically(value: Any, path: Path) -> None:
    """`torch.save(value, path)` through `atomic_file`."""
    with atomic_file(path) as file:
        torch.save(value, file)
