"""Depthwise convolution through the FFT, as a registered operator for large DCLS kernels.

A depthwise convolution with an `S^n` kernel costs `S^n` multiply-adds per output; through
the FFT it costs a few transforms of the padded input, whatever `S`. On this 2-core CPU,
at ConvNeXt's 56x56 maps, forward+backward is about 4.5x faster than the direct convolution at
13x13 (load ~7) and 8-17x at 17x17 to 23x23 (`benchmarks/results/dcls_cpu.md`), with float32 rounding
differences only (about 5e-7 of the output's scale).

Memory: every spectrum is the size of the padded input (at ConvNeXt's 7x7 maps a 17x17
kernel pads them to 23x23, 11x the input), so the op transforms blocks of channels (and,
for large batches, of samples) of at most `BLOCK_BYTES` padded values at a time. Its peak
memory is then that of the direct convolution (input, output, gradients) plus a few
blocks, whatever the batch: below `dcls` 0.1.1's at every ConvNeXt-T stage, whose kernel
construction alone holds several `(C, K, S, S)` tensors (`benchmarks/dcls.py`).

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
    """A view of `tensor`'s last dims from `starts`, `sizes` long."""
    return tensor[(..., *(slice(start, start + size) for start, size in zip(starts, sizes)))]


# Padded values of one block of channels and samples transformed at a time (4 MiB of float32).
BLOCK_BYTES = 4 * 2**20


def _blocks(input: Tensor, padded: list[int]) -> list[tuple[slice, slice]]:
    """`(samples, channels)` slices covering `input (B, C, ...)` in blocks whose padded size is
    at most `BLOCK_BYTES` (one channel of one sample at the least)."""
    batch, channels = input.shape[:2]
    plane = math.prod(padded) * max(4, input.element_size())
    per_channel = max(1, BLOCK_BYTES // plane)  # samples x channels per block
    channel_step = min(channels, max(1, per_channel // batch))
    batch_step = batch if channel_step > 1 or per_channel >= batch else per_channel
    return [(slice(b, b + batch_step), slice(c, c + channel_step)) for c in range(0, channels, channel_step) for b in range(0, batch, batch_step)]


# The products below are formed in place and conjugates are physical (`conj_physical_`): a
# lazy conj bit is lost under torch.compile, and every spectrum is as large as the input.
@torch.library.custom_op("farconv::dcls_depthwise_fft_conv", mutates_args=())
def _fft_conv_op(input: Tensor, kernel: Tensor, padding: list[int]) -> Tensor:
    dims, padded, out = _geometry(input, kernel, padding)
    output = input.new_empty(*input.shape[:2], *out)
    for samples, channels in _blocks(input, padded):
        spectrum = _input_spectrum(input[samples, channels], padding, dims)
        spectrum.mul_(_kernel_spectrum(kernel[channels], padded, dims, spectrum.real.dtype).conj_physical_())
        # circular cross-correlation; the kept outputs never wrap around (i + k < padded size)
        full = torch.fft.irfftn(spectrum, s=padded, dim=dims)
        output[samples, channels] = _crop(full, [0] * len(out), out)
    return output


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
    grad_input = torch.empty_like(input)
    grad_kernel = torch.zeros(kernel.shape[1], kernel.shape[0], *kernel.shape[2:], dtype=dtype, device=kernel.device)  # (1, C, *K)
    for samples, channels in _blocks(input, padded):
        grad_f = torch.fft.rfftn(grad_output[samples, channels].to(dtype), s=padded, dim=dims)  # zero-padded at the end
        # input: the full convolution of the gradient with the kernel, cropped to the unpadded input
        full = torch.fft.irfftn(grad_f * _kernel_spectrum(kernel[channels], padded, dims, dtype), s=padded, dim=dims)
        grad_input[samples, channels] = _crop(full, ctx.padding, input.shape[2:])
        del full
        # kernel: the correlation of the padded input with the gradient, summed over the batch
        spectrum = _input_spectrum(input[samples, channels], ctx.padding, dims).mul_(grad_f.conj_physical_())
        del grad_f
        correlation = torch.fft.irfftn(spectrum.sum(0, keepdim=True), s=padded, dim=dims)
        grad_kernel[:, channels] += _crop(correlation, [0] * len(dims), kernel.shape[2:])
    return grad_input, grad_kernel.transpose(0, 1).to(kernel.dtype).contiguous(), None


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
