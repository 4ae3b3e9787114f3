"""Depthwise convolution through the FFT, as a registered operator for large DCLS kernels.

A depthwise convolution with an `S^n` kernel costs `S^n` multiply-adds per output; through
the FFT it costs a few transforms of the padded input, whatever `S`. On CPU that is 5-15x
faster from 13x13 kernels at ConvNeXt's 56x56 maps (`benchmarks/dcls.py`), with float32
rounding differences only (about 1e-6 of the output's scale).

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


def _spectra(input: Tensor, kernel: Tensor, padding: list[int]):
    """rFFTs of the zero-padded input `(B, C, *F)` and of the kernel at the same size `(1, C, *F)`."""
    dims, padded, _ = _geometry(input, kernel, padding)
    compute = torch.promote_types(input.dtype, torch.float32)
    input_f = torch.fft.rfftn(F.pad(input.to(compute), _pad_amounts(padding, padding)), dim=dims)
    kernel_f = torch.fft.rfftn(kernel.to(compute).transpose(0, 1), s=padded, dim=dims)
    return input_f, kernel_f


@torch.library.custom_op("farconv::dcls_depthwise_fft_conv", mutates_args=())
def _fft_conv_op(input: Tensor, kernel: Tensor, padding: list[int]) -> Tensor:
    dims, padded, out = _geometry(input, kernel, padding)
    input_f, kernel_f = _spectra(input, kernel, padding)
    # circular cross-correlation (conj_physical: a lazy conj bit is lost under torch.compile); the kept outputs never wrap around (i + k < padded size)
    full = torch.fft.irfftn(input_f * kernel_f.conj_physical(), s=padded, dim=dims)
    return full[(..., *(slice(0, size) for size in out))].to(input.dtype).contiguous()


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
    dims, padded, out = _geometry(input, kernel, ctx.padding)
    input_f, kernel_f = _spectra(input, kernel, ctx.padding)
    grad_f = torch.fft.rfftn(grad_output.to(input_f.real.dtype), s=padded, dim=dims)  # zero-padded at the end
    # input: the full convolution of the gradient with the kernel, cropped to the unpadded input
    grad_input = torch.fft.irfftn(grad_f * kernel_f, s=padded, dim=dims)
    grad_input = grad_input[(..., *(slice(pad, pad + size) for pad, size in zip(ctx.padding, input.shape[2:])))]
    # kernel: the correlation of the padded input with the gradient, summed over the batch
    grad_kernel = torch.fft.irfftn((input_f * grad_f.conj_physical()).sum(0, keepdim=True), s=padded, dim=dims)
    grad_kernel = grad_kernel[(..., *(slice(0, k) for k in kernel.shape[2:]))].transpose(0, 1)
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
