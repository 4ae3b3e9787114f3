"""Memory bandwidth of the device, measured in the same run, and how close the box
convolution comes to it (a roofline check: the box op does few operations per byte, so
memory traffic, not arithmetic, bounds it).

Bandwidth comes from two simple kernels on a buffer much larger than the caches:
`dst.copy_(src)` (reads and writes every byte: 2 x size moved) and `src.sum()` (reads
every byte once). The box forward moves at least its input (read) and its output
(written); the integral-image algorithm also writes and reads a float32 integral image of
`(B, C, H+1, W+1)`. Both byte counts are divided by the measured forward time. The backward
(input and box gradients of a given output gradient, the op's own backward called directly)
moves at least the output gradient and the input (read) and the input gradient (written);
its algorithm also writes and reads the integral images of the input and of every gradient
plane, `(B, C, H+1, W+1)` and `(B, C*F, H+1, W+1)`.

Two timings of each direction: the op as a layer calls it (`op`: every call allocates its
outputs, and on CPU the first touch of a fresh allocation of tens of MB costs page faults
worth as much as the kernel itself), and the compiled kernels alone writing into buffers
allocated once (`kernels`), as the copy kernel writes into an existing buffer: the
kernels' bandwidth, which is what the copy bandwidth bounds.
"""

from __future__ import annotations

import os

import torch

from engine.profiling import median_ms
from layers.box import BoxConv2d, extension

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
    """Box forward and backward against the bandwidth measured just before them.

    Returns the shape, the forward and backward times of the op and of its kernels alone
    (see the module docstring), the bytes moved by the two counts of the module docstring,
    the bandwidth they imply and its fraction of the measured copy and sum bandwidth.
    """
    dev = torch.device(device)
    batch, channels, filters, height, width = (2, 32, 4, 128, 256) if quick else (8, 64, 4, 128, 256)
    bandwidth = measure_bandwidth(device, quick)
    layer = BoxConv2d(channels, filters, height, width).to(dev).eval()
    x = torch.randn(batch, channels, height, width, device=dev)
    grad = torch.randn(batch, channels * filters, height, width, device=dev)
    coordinates = [coordinate.detach() for coordinate in layer.box_coordinates()]
    steps = {
        "op": {
            "forward": lambda: torch.ops.farconv.box_conv2d(x, *coordinates, 1, 1, layer.normalize, layer.exact, layer.impl),
            "backward": lambda: torch.ops.farconv.box_conv2d_backward(grad, x, *coordinates, 1, 1, layer.normalize, layer.exact,
                                                                      layer.impl, True, True),
        },
    }  # fmt: skip
    if extension.available(dev):
        kernels = extension.library(dev)
        edges, mirrored, scale = extension.kernel_arguments(x, tuple(coordinates), layer.normalize, layer.exact)
        integral = x.new_empty(batch, channels, height + 1, width + 1)
        out, grad_input = x.new_empty(grad.shape), torch.empty_like(x)

        def forward_kernels() -> None:
            kernels.integral_image_out(x, integral)
            kernels.box_sums_out(integral, edges, scale, 1, 1, layer.exact, out)

        def backward_kernels() -> None:
            kernels.box_sums_transposed_out(grad, mirrored, scale, 1, 1, layer.exact, grad_input)
            kernels.integral_image_out(x, integral)
            kernels.box_slopes(integral, edges, grad, scale, 1, 1, layer.exact)

        steps["kernels"] = {"forward": forward_kernels, "backward": backward_kernels}
    repeats = 5 if quick else 20
    element = x.element_size()
    planes, output_planes, plane, integral_plane = batch * channels, batch * channels * filters, height * width, (height + 1) * (width + 1)
    moved = {
        "forward": {
            "compulsory": (planes + output_planes) * plane * element,
            "with_integral_image": (planes + output_planes) * plane * element + 2 * planes * integral_plane * 4,
        },
        "backward": {
            "compulsory": (2 * planes + output_planes) * plane * element,
            "with_integral_image": (2 * planes + output_planes) * plane * element + 2 * (planes + output_planes) * integral_plane * 4,
        },
    }  # fmt: skip
    result = {
        "shape": {"batch": batch, "channels": channels, "filters": filters, "height": height, "width": width, "dtype": str(x.dtype)},
        "bandwidth": bandwidth,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    with torch.no_grad():
        for path, directions in steps.items():
            result[path] = {}
            for direction, step in directions.items():
                ms = median_ms(step, dev, warmup=2, repeats=repeats)
                result[path][direction] = {"ms": ms}
                for count, size in moved[direction].items():
                    achieved = size / GB / (ms / 1e3)
                    result[path][direction][count] = {
                        "bytes": size,
                        "gb_s": achieved,
                        "of_copy_bandwidth": achieved / bandwidth["copy_gb_s"],
                        "of_sum_bandwidth": achieved / bandwidth["sum_gb_s"],
                    }
    return result
