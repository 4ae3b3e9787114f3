"""`box_conv2d`: the box convolution as a registered PyTorch operator.

The op `farconv::box_conv2d` (and its backward `farconv::box_conv2d_backward`) is
registered with `torch.library`, so autograd, `torch.compile`, fake tensors and the FLOP
counter of `run_profiler.py` all see one operator. Its kernels come from one of:

- `reference`: the pure-PyTorch implementation of `layers/box/reference.py`;
- `extension`: the compiled C++ (CPU) or CUDA extension, built on first use;
- `auto` (default): the extension when it builds for the input's device, else the
  reference with a one-line warning.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from layers.box import reference
from layers.box.reference import output_size

IMPLEMENTATIONS = ("auto", "reference", "extension")


def _kernels(impl: str, device: torch.device) -> ModuleType:
    """The module whose `forward`/`backward` (reference signatures) compute the op."""
    if impl == "reference":
        return reference
    from layers.box import extension

    if extension.available(device, required=impl == "extension"):
        return extension
    return reference


@torch.library.custom_op("farconv::box_conv2d", mutates_args=())
def _box_conv2d_op(
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    stride_h: int,
    stride_w: int,
    normalize: bool,
    exact: bool,
    impl: str,
) -> Tensor:
    kernels = _kernels(impl, input.device)
    return kernels.forward(input, x_min, x_max, y_min, y_max, (stride_h, stride_w), normalize, exact)


@_box_conv2d_op.register_fake
def _box_conv2d_fake(input, x_min, x_max, y_min, y_max, stride_h, stride_w, normalize, exact, impl):
    batch, channels, height, width = input.shape
    return input.new_empty(batch, channels * x_min.shape[1], output_size(height, stride_h), output_size(width, stride_w))


@torch.library.custom_op("farconv::box_conv2d_backward", mutates_args=())
def _box_conv2d_backward_op(
    grad_output: Tensor,
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    stride_h: int,
    stride_w: int,
    normalize: bool,
    exact: bool,
    impl: str,
    needs_input_grad: bool,
    needs_box_grad: bool,
) -> list[Tensor]:
    """Returns `[grad_input, grad_x_min, grad_x_max, grad_y_min, grad_y_max]`; gradients
    that were not asked for are empty tensors."""
    kernels = _kernels(impl, input.device)
    grad_input, grad_box = kernels.backward(
        grad_output.contiguous(), input, x_min, x_max, y_min, y_max,
        (stride_h, stride_w), normalize, exact, needs_input_grad, needs_box_grad,
    )  # fmt: skip
    if grad_input is None:
        grad_input = input.new_empty(0)
    if grad_box is None:
        grad_box = [input.new_empty(0) for _ in range(4)]  # distinct: op outputs may not alias
    return [grad_input, *grad_box]


@_box_conv2d_backward_op.register_fake
def _box_conv2d_backward_fake(grad_output, input, x_min, *rest):
    needs_input_grad, needs_box_grad = rest[-2:]
    grad_input = torch.empty_like(input) if needs_input_grad else input.new_empty(0)
    grad_box = [torch.empty_like(x_min) if needs_box_grad else input.new_empty(0) for _ in range(4)]
    return [grad_input, *grad_box]


def _setup_context(ctx, inputs, output) -> None:
    # Only the input and the boxes are kept: the backward recomputes what it needs of the
    # output, so a box layer holds no (B, C*F, H, W) activation for its backward.
    input, x_min, x_max, y_min, y_max, stride_h, stride_w, normalize, exact, impl = inputs
    ctx.save_for_backward(input, x_min, x_max, y_min, y_max)
    ctx.settings = (stride_h, stride_w, normalize, exact, impl)


def _backward(ctx, grad_output):
    input, x_min, x_max, y_min, y_max = ctx.saved_tensors
    needs_input_grad = ctx.needs_input_grad[0]
    needs_box_grad = any(ctx.needs_input_grad[1:5])
    grads = torch.ops.farconv.box_conv2d_backward(
        grad_output, input, x_min, x_max, y_min, y_max, *ctx.settings, needs_input_grad, needs_box_grad,
    )  # fmt: skip
    grad_input = grads[0] if needs_input_grad else None
    grad_box = [grad if needs else None for grad, needs in zip(grads[1:], ctx.needs_input_grad[1:5])]
    return (grad_input, *grad_box, None, None, None, None, None)


_box_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def macs(output_shape: torch.Size, normalize: bool, exact: bool) -> int:
    """Multiply-accumulates of the forward pass, by the convention of this package: per
    output value, 4 bilinear reads of the integral image (16 taps) in exact mode or 4
    integer reads when rounded, plus one multiply when normalising. The integral image
    (two additions per input value) is not counted."""
    per_output = (16 if exact else 4) + (1 if normalize else 0)
    return per_output * int(torch.Size(output_shape).numel())


@register_flop_formula(torch.ops.farconv.box_conv2d)
def _box_conv2d_flops(input_shape, x_min_shape, x_max_shape, y_min_shape, y_max_shape, stride_h, stride_w,
                      normalize, exact, impl, *, out_shape, **kwargs) -> int:  # fmt: skip
    return 2 * macs(out_shape, normalize, exact)


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"box_conv2d: {name}={value!r} must be a positive int or a pair of them")
    return pair


def check_arguments(input: Tensor, coordinates: tuple[Tensor, Tensor, Tensor, Tensor], impl: str) -> None:
    """Raise `ValueError` naming the first argument that does not fit."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"box_conv2d: impl={impl!r} is not one of {IMPLEMENTATIONS}")
    if input.ndim != 4:
        raise ValueError(f"box_conv2d: input must be (B, C, H, W), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise ValueError(f"box_conv2d: input must be floating point, got {input.dtype}")
    names = ("x_min", "x_max", "y_min", "y_max")
    for name, coordinate in zip(names, coordinates):
        if coordinate.ndim != 2 or coordinate.shape[0] != input.shape[1]:
            raise ValueError(
                f"box_conv2d: {name} must be (C, F) with C={input.shape[1]} input channels, got {tuple(coordinate.shape)}"
            )
        if coordinate.shape != coordinates[0].shape:
            raise ValueError(f"box_conv2d: {name} has shape {tuple(coordinate.shape)}, x_min {tuple(coordinates[0].shape)}")
        if coordinate.device != input.device:
            raise ValueError(f"box_conv2d: {name} is on {coordinate.device}, input on {input.device}")
        if not coordinate.is_floating_point():
            raise ValueError(f"box_conv2d: {name} must be floating point, got {coordinate.dtype}")


def box_conv2d(
    input: Tensor,
    x_min: Tensor,
    x_max: Tensor,
    y_min: Tensor,
    y_max: Tensor,
    *,
    stride: int | tuple[int, int] = 1,
    normalize: bool = True,
    exact: bool = True,
    impl: str = "auto",
) -> Tensor:
    """Depthwise box convolution: `(B, C, H, W) -> (B, C*F, ceil(H/s_h), ceil(W/s_w))`.

    Args:
        input: `(B, C, H, W)`, float16, bfloat16, float32 or float64 (integral images
            accumulate in float32, float64 for float64 inputs).
        x_min, x_max, y_min, y_max: `(C, F)` box coordinates in pixels, relative to the
            output pixel (x = rows, y = columns); box `(c, f)` gives output channel `c*F + f`
            and covers rows `[i*s_h + x_min, i*s_h + x_max + 1)` of input channel `c`.
            Boxes must have positive area (`BoxConv2d` keeps them so).
        stride: output pixel `(i, j)` sits at input position `(i*s_h, j*s_w)`.
        normalize: divide by the box area `(x_max - x_min + 1)(y_max - y_min + 1)`.
        exact: weigh partly covered border pixels by their coverage; `False` rounds the
            box inward (faster), passing gradients straight through the rounding.
        impl: `auto`, `reference` or `extension` (see the module docstring).
    """
    check_arguments(input, (x_min, x_max, y_min, y_max), impl)
    stride_h, stride_w = _pair(stride, "stride")
    if torch.is_autocast_enabled(input.device.type) and input.dtype == torch.float32:
        # Autocast does not know this op; run it in the autocast dtype as it would a convolution
        # (the box coordinates stay float32: rounding box edges to bf16 would move them).
        input = input.to(torch.get_autocast_dtype(input.device.type))
    return torch.ops.farconv.box_conv2d(input, x_min, x_max, y_min, y_max, stride_h, stride_w, normalize, exact, impl)
