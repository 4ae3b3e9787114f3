"""Memory bandwidth of the device, measured in the same run, and how close the box
convolution comes to it (a roofline check: the box op does few operations per byte, so
memory traffic, not arithmetic, bounds it).

Bandwidth comes from two simple kernels on a buffer much larger than the caches:
`dst.copy_(src)` (reads and writes every byte: 2 x size moved) and `src.sum()` (reads
every byte once). The box forward moves at least its input (read) and its output
(written); the integral-image algorithm also writes and reads a float32 integral image of
`(B, C, H+1, W+1)`. Both byte counts are divided by the measured forward time.
"""

from __future__ import annotations

import torch

from engine.profiling import median_ms
from layers.box import BoxConv2d

GB = 1e9


def measure_bandwidth(device: str, quick: bool) -> dict:
    """`{"copy_gb_s", "sum_gb_s", "buffer_mb"}` from median timings of copy and sum kernels."""
    dev = torch.device(device)
    numel = (32 if quick else 128) * 2**20  # float32: 128 MB / 512 MB, beyond any cache
    src = torch.ones(numel, device=dev)
    dst = torch.empty_like(src)
    repeats = 5 if quick else 20
    copy_ms = median_ms(lambda: dst.copy_(src), dev, warmup=2, repeats=repeats)
    sum_ms = median_ms(lambda: src.sum(), dev, warmup=2, repeats=repeats)
    size = numel * src.element_size()
    return {
        "buffer_mb": size / 2**20,
        "copy_ms": copy_ms,
        "sum_ms": sum_ms,
        "copy_gb_s": 2 * size / GB / (copy_ms / 1e3),
        "sum_gb_s": size / GB / (sum_ms / 1e3),
        "repeats": repeats,
    }


def box_roofline(quick: bool, device: str) -> dict:
    """Box forward (no grad, compiled kernels) against the bandwidth measured just before it.

    Returns the shape, the forward time, the bytes moved by the two counts of the module
    docstring, the bandwidth they imply and its fraction of the measured copy and sum bandwidth.
    """
    dev = torch.device(device)
    batch, channels, filters, height, width = (2, 32, 4, 128, 256) if quick else (8, 64, 4, 128, 256)
    bandwidth = measure_bandwidth(device, quick)
    layer = BoxConv2d(channels, filters, height, width).to(dev).eval()
    x = torch.randn(batch, channels, height, width, device=dev)

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    forward_ms = median_ms(forward, dev, warmup=2, repeats=5 if quick else 20)
    element = x.element_size()
    compulsory = batch * channels * height * width * element * (1 + filters)
    integral = 2 * batch * channels * (height + 1) * (width + 1) * 4
    result = {
        "shape": {"batch": batch, "channels": channels, "filters": filters, "height": height, "width": width, "dtype": str(x.dtype)},
        "bandwidth": bandwidth,
        "forward_ms": forward_ms,
    }
    for name, moved in (("compulsory", compulsory), ("with_integral_image", compulsory + integral)):
        achieved = moved / GB / (forward_ms / 1e3)
        result[name] = {
            "bytes": moved,
            "gb_s": achieved,
            "of_copy_bandwidth": achieved / bandwidth["copy_gb_s"],
            "of_sum_bandwidth": achieved / bandwidth["sum_gb_s"],
        }
    return result
