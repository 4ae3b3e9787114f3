"""Depthwise convolution through the FFT, as a registered operator for large DCLS kernels.

A depthwise convolution with an `S^n` kernel costs `S^n` multiply-adds per output; through
the FFT it costs a few transforms of the padded input, whatever `S`. On this 2-core CPU,
at ConvNeXt's 56x56 maps, forward+backward is about 4.5x faster than the direct convolution at
13x13 (load ~7) and 8-17x at 17x17 to 23x23 (`benchmarks/results/dcls_cpu.md`), with float32 rounding
differences only (about 5e-7 of the output's scale).

`farconv::dcls_depthwise_fft_conv` is registered with `torch.library` like the kernel
construction, so `torch.compile` sees one op, and the FLOP counter counts it as the direct
convolution it replaces (the MACs papers report).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula


def _geometry(input: Tensor, kernel: Tensor, padding: list[int]):
    """Spatial dims of the input, its padded sizes and the output's sizes."""
    ndim = kernel.ndim - 2
    padded = [size + 2 * pad for size, pad in zip(input.shape[2:], padding)]
    out = [size - k + 1 for size, k in zip(padded, kernel.shape[2:])]
    return tuple(range(2, 2 + ndim)), padded, out


def _pad_amounts(before: list[int], after: list[int]) -> list[int]:
    """`F.pad` amounts (last dimension first)."""
    return [amount for b, a in zip(reversed(before), reversed(after)) for amount in (b, a)]


def _input_spectrum(input: Tensor, padding: list[int], dims: tuple[int, ...]) -> Tensor:
    """rFFT of the zero-padded input, `(B, C, *F)`, in at least float32."""
    padded = F.pad(input.to(torch.promote_types(input.dtype, torch.float32)), _pad_amounts(padding, padding))
    return torch.fft.rfftn(padded, dim=dims)


def _kernel_spectrum(kernel: Tensor, padded: list[int], dims: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """rFFT of the kernel zero-padded to the padded input's size, `(1, C, *F)`."""
    return torch.fft.rfftn(kernel.to(dtype).transpose(0, 1), s=padded, dim=dims)


def _crop(tensor: Tensor, starts, sizes) -> Tensor:
    return tensor[(..., *(slice(start, start + size) for start, size in zip(starts, sizes)))].contiguous()


# The products below are formed in place and conjugates are physical (`conj_physical_`): a
# lazy conj bit is lost under torch.compile, and every spectrum is as large as the input.
@torch.library.custom_op("farconv::dcls_depthwise_fft_conv", mutates_args=())
def _fft_conv_op(input: Tensor, kernel: Tensor, padding: list[int]) -> Tensor:
    dims, padded, out = _geometry(input, kernel, padding)
    spectrum = _input_spectrum(input, padding, dims)
    spectrum.mul_(_kernel_spectrum(kernel, padded, dims, spectrum.real.dtype).conj_physical_())
    # circular cross-correlation; the kept outputs never wrap around (i + k < padded size)
    full = torch.fft.irfftn(spectrum, s=padded, dim=dims)
    return _crop(full, [0] * len(out), out).to(input.dtype)


@_fft_conv_op.register_fake
def _fft_conv_fake(input, kernel, padding):
    _, _, out = _geometry(input, kernel, padding)
    return input.new_empty(*input.shape[:2], *out)


def _setup_context(ctx, inputs, output) -> None:
    input, kernel, padding = inputs
    ctx.save_for_backward(input, kernel)
    ctx.padding = padding


def _backward(ctx, grad_output):
    input, kernel = ctx.saved_tensors
    dims, padded, _ = _geometry(input, kernel, ctx.padding)
    dtype = torch.promote_types(input.dtype, torch.float32)
    grad_f = torch.fft.rfftn(grad_output.to(dtype), s=padded, dim=dims)  # zero-padded at the end
    # input: the full convolution of the gradient with the kernel, cropped to the unpadded input
    grad_input = torch.fft.irfftn(grad_f * _kernel_spectrum(kernel, padded, dims, dtype), s=padded, dim=dims)
    grad_input = _crop(grad_input, ctx.padding, input.shape[2:])
    # kernel: the correlation of the padded input with the gradient, summed over the batch
    spectrum = _input_spectrum(input, ctx.padding, dims).mul_(grad_f.conj_physical_())
    grad_kernel = torch.fft.irfftn(spectrum.sum(0, keepdim=True), s=padded, dim=dims)
    grad_kernel = _crop(grad_kernel, [0] * len(dims), kernel.shape[2:]).transpose(0, 1)
    return grad_input.to(input.dtype), grad_kernel.to(kernel.dtype).contiguous(), None


_fft_conv_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.farconv.dcls_depthwise_fft_conv)
def _fft_conv_flops(input_shape, kernel_shape, padding, *, out_shape, **kwargs) -> int:
    return 2 * math.prod(out_shape) * math.prod(kernel_shape[2:])


def depthwise_fft_conv(input: Tensor, kernel: Tensor, padding: tuple[int, ...]) -> Tensor:
    """The depthwise cross-correlation `F.convNd(input, kernel, padding=padding, groups=C)`,
    stride 1, through the FFT.

    Args:
        input: `(B, C, *S)`, n = 1, 2 or 3 spatial dims.
        kernel: `(C, 1, *K)`.
        padding: zeros added on both sides of each spatial dim, `(p_1, ..., p_n)`.
    Returns:
        `(B, C, *(S + 2p - K + 1))` in the input's dtype (computed in at least float32).
    """
    if kernel.ndim != input.ndim or kernel.shape[:2] != (input.shape[1], 1):
        raise ValueError(f"depthwise_fft_conv: kernel {tuple(kernel.shape)} must be (C, 1, *K) for input {tuple(input.shape)}")
    return torch.ops.farconv.dcls_depthwise_fft_conv(input, kernel, list(padding))
