"""The compiled box-convolution kernels, with the signatures of `layers/box/reference.py`.

Python keeps the cheap orchestration (inward rounding, box areas, dtype casts); the C++
(`csrc/box_conv_cpu.cpp`) or CUDA (`csrc/box_conv_cuda.cu`) extension does the work per
pixel in two calls: `box_sums` (the forward pass) and `box_backward` (box sums summed over
filters for the input gradient, and reduced edge derivatives for the box gradients). Each
integrates the planes it needs itself; both follow the interpolation and slope rules of
`csrc/box_conv.h`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from layers._build import ExtensionUnavailable, failure_reason, load_extension
from layers.box.reference import (
    Coordinates,
    accumulation_dtype,
    add_area_gradients,
    box_area,
    effective_coordinates,
)

SOURCES = Path(__file__).parent / "csrc"
_BUILDS = {
    "cpu": ("farconv_box_cpu", [SOURCES / "box_conv_cpu.cpp"]),
    "cuda": ("farconv_box_cuda", [SOURCES / "box_conv_cuda.cpp", SOURCES / "box_conv_cuda.cu"]),
}


def library(device: torch.device) -> ModuleType | None:
    """The compiled kernels for `device` (built on first use), or None where they cannot be built."""
    if device.type not in _BUILDS:
        return None
    name, sources = _BUILDS[device.type]
    return load_extension(name, sources, cuda=device.type == "cuda")


def available(device: torch.device, required: bool = False) -> bool:
    """Whether the kernels for `device` are built (building them on first call).

    With `required`, raise `ExtensionUnavailable` instead of returning False.
    """
    if library(device) is not None:
        return True
    if required:
        name = _BUILDS.get(device.type, (f"<none for {device.type}>",))[0]
        raise ExtensionUnavailable(f"box_conv2d: impl='extension' but {name} is unavailable ({failure_reason(name)})")
    return False


def _edges(box: Coordinates) -> list[Tensor]:
    """`[r_lo, r_hi, c_lo, c_hi]`: the box as half-open row and column ranges."""
    x_min, x_max, y_min, y_max = box
    return [x_min.contiguous(), (x_max + 1).contiguous(), y_min.contiguous(), (y_max + 1).contiguous()]


def _prepare(input: Tensor, coordinates: Coordinates, exact: bool) -> tuple[Coordinates, Tensor]:
    dtype = accumulation_dtype(input.dtype)
    box = tuple(c.to(dtype) for c in effective_coordinates(*coordinates, exact))
    return box, box_area(*box)


def kernel_arguments(input: Tensor, coordinates: Coordinates, normalize: bool, exact: bool) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """`(edges, mirrored edges, scale)` as the kernels take them: the boxes' half-open ranges, those
    of the mirrored boxes (for the input gradient) and the per-box output scale."""
    return _arguments(*_prepare(input, coordinates, exact), normalize)


def _arguments(box: Coordinates, area: Tensor, normalize: bool) -> tuple[list[Tensor], list[Tensor], Tensor]:
    b_x_min, b_x_max, b_y_min, b_y_max = box
    scale = (area.reciprocal() if normalize else torch.ones_like(area)).contiguous()
    return _edges(box), _edges((-b_x_max, -b_x_min, -b_y_max, -b_y_min)), scale


def forward(input, x_min, x_max, y_min, y_max, stride, normalize, exact) -> Tensor:
    edges, _, scale = kernel_arguments(input, (x_min, x_max, y_min, y_max), normalize, exact)
    out = library(input.device).box_sums(input, edges, scale, stride[0], stride[1], exact)
    return out.to(input.dtype)


def backward(grad_output, input, x_min, x_max, y_min, y_max, stride, normalize, exact, needs_input_grad, needs_box_grad):
    box, area = _prepare(input, (x_min, x_max, y_min, y_max), exact)
    edges, mirrored, scale = _arguments(box, area, normalize)
    grad = grad_output.to(scale.dtype).contiguous()
    grad_input, totals = library(input.device).box_backward(
        input, grad, edges, mirrored, scale, stride[0], stride[1], exact, needs_input_grad, needs_box_grad,
    )  # fmt: skip
    if grad_input is not None:
        grad_input = grad_input.to(input.dtype)

    grad_box = None
    if totals is not None:
        grad_box = [total.clone() for total in totals[:4].unbind(0)]  # separate tensors: op outputs may not alias
        if normalize:  # totals[4] is the sum of grad * output
            grad_box = add_area_gradients(grad_box, totals[4], box)
        grad_box = tuple(g.to(x_min.dtype) for g in grad_box)
    return grad_input, grad_box
