"""Checking that two paths agree before timing them, in full float32 on every device.

On Ampere and later GPUs cuDNN convolutions run float32 in TF32 (10-bit mantissa) by
default, which moves a float32 output by ~1e-3 of its scale: more than the tolerances the
benchmarks check two paths against. The checks run inside `exact_float32()`; the timings do
not, so they measure what a user gets by default.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matrix products inside the block (no effect on CPU)."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
