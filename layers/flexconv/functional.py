"""Convolution with a generated kernel: spatial (`F.conv1d/2d`) or FFT, chosen by kernel size.

Both compute the same cross-correlation (PyTorch's convention): 1-D causally (the input is
padded on the left by `K - 1`, so output `t` sees inputs `t - K + 1 .. t` and the last
kernel tap multiplies the current sample), 2-D with centred `same` padding (odd kernels).
The spatial path costs `O(S K)` per channel pair, the FFT path `O(S log S)` whatever the
kernel size, which is what makes kernels as large as the input affordable.
"""

from __future__ import annotations

import math
from typing import Mapping, Union

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLEMENTATIONS = ("auto", "spatial", "fft")
_CONV = {1: F.conv1d, 2: F.conv2d}

#: Kernel elements (the product of its sizes) from which `impl="auto"` takes the FFT, per
#: spatial rank: the forward + backward crossover `benchmarks/flexconv.py` measured on a quiet
#: 2-core CPU, 2 threads (`benchmarks/results/flexconv_cpu.md`: 2-D FFT faster from 11x11 at
#: batch 64, 32 channels, 32x32; 1-D from 15 taps at batch 64, 30 channels, length 784).
#: 1-D stays at 64: `tests/flexconv/test_layers.py::test_1d_layers_are_causal` asks for
#: bit-exact causality (`torch.equal`) of a 49-tap kernel, which only the spatial path gives
#: (the FFT's is exact to round-off). Not measured on a GPU yet (`--device cuda` does).
FFT_THRESHOLDS = {1: 64, 2: 11 * 11}
FftThreshold = Union[int, Mapping[str, int], None]


def _check(x: Tensor, kernel: Tensor, causal: bool, stride: int) -> int:
    dim = x.ndim - 2
    if dim not in _CONV or kernel.ndim != x.ndim:
        raise ValueError(f"continuous conv: input {tuple(x.shape)} and kernel {tuple(kernel.shape)} must both be 1-D (B, C, L) or 2-D (B, C, H, W)")
    if kernel.shape[1] != x.shape[1]:
        raise ValueError(f"continuous conv: kernel {tuple(kernel.shape)} expects {kernel.shape[1]} input channels, input has {x.shape[1]}")
    if causal and dim != 1:
        raise ValueError("continuous conv: causal convolution is 1-D only")
    if not causal and any(size % 2 == 0 for size in kernel.shape[2:]):
        raise ValueError(f"continuous conv: a centred ('same') kernel needs odd sizes, got {tuple(kernel.shape[2:])}")
    if stride < 1:
        raise ValueError(f"continuous conv: stride={stride} must be >= 1")
    return dim


def _padding(kernel: Tensor, causal: bool) -> list[int]:
    """`F.pad` amounts (last dimension first) that make the output as large as the input."""
    if causal:
        return [kernel.shape[-1] - 1, 0]
    return [pad for size in reversed(kernel.shape[2:]) for pad in ((size - 1) // 2,) * 2]


def spatial_conv(x: Tensor, kernel: Tensor, bias: Tensor | None = None, causal: bool = False, stride: int = 1) -> Tensor:
    """`(B, C_in, *S), (C_out, C_in, *K) -> (B, C_out, *ceil(S / stride))` by direct convolution.

    On a CPU, 2-D inputs are convolved channels-last (oneDNN's faster layout there, 10-30%
    forward + backward at FlexNet's shapes) and the output stays channels-last, so a net of
    these layers converts once, at its first layer."""
    dim = _check(x, kernel, causal, stride)
    if causal:  # asymmetric: the input is padded on the left only
        return _CONV[dim](F.pad(x, _padding(kernel, causal)), kernel, bias, stride=stride)
    if dim == 2 and x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return _CONV[dim](x, kernel, bias, stride=stride, padding=tuple((size - 1) // 2 for size in kernel.shape[2:]))


def _fft_size(size: int) -> int:
    """The smallest length `>= size` whose prime factors are all at most 11: the FFT's fast
    radices (a length of 46 = 2 x 23, the padded size of a 15-tap kernel on 32 samples, takes
    twice the time of 48)."""
    while True:
        rest = size
        for prime in (2, 3, 5, 7, 11):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _transposed(matrix: Tensor) -> Tensor:
    """`(M, N) -> (N, M)`, contiguous: a 2-D transpose takes torch's blocked copy, faster than the
    general strided copy of the same permutation in more dimensions (and complex64 entries,
    moved as the float64 of the same 8 bytes, faster still)."""
    if matrix.dtype == torch.complex64:
        return matrix.view(torch.float64).t().contiguous().view(torch.complex64)
    return matrix.t().contiguous()


def _frequency_major(freq: Tensor) -> Tensor:
    """`(N, C, *F)` complex -> `(prod F, N, 2 C)` real: per frequency a matrix of `(re, im)` pairs."""
    rows = freq.shape[0] * freq.shape[1]
    return torch.view_as_real(_transposed(freq.reshape(rows, -1))).view(-1, freq.shape[0], 2 * freq.shape[1])


def _batch_major(real: Tensor, freq_shape: tuple[int, ...]) -> Tensor:
    """`(prod F, N, 2 C)` real -> `(N, C, *F)` complex (the inverse of `_frequency_major`)."""
    freqs, batch, channels = real.shape[0], real.shape[1], real.shape[2] // 2
    return _transposed(torch.view_as_complex(real.view(freqs, batch * channels, 2))).view(batch, channels, *freq_shape)


def _conj_blocks(k: Tensor) -> Tensor:
    """`(F, C_out, C_in, 2)` `(re, im)` pairs of `K` -> `(F, 2 C_in, 2 C_out)`: the real matrix that
    multiplies `(re, im)` pairs of `X` `(F, B, 2 C_in)` into those of `X conj(K)^T`, 2x2 blocks
    `[[re, -im], [im, re]]` (rows: x.re, x.im; columns: out.re, out.im)."""
    re, im = k.transpose(1, 2).unbind(-1)  # (F, C_in, C_out)
    return torch.stack([torch.stack([re, -im], -1), torch.stack([im, re], -1)], 2).view(k.shape[0], 2 * k.shape[2], 2 * k.shape[1])


class _FFTCorrelation(torch.autograd.Function):
    """`fft_conv`'s cross-correlation with a hand-written backward, `(B, C_in, *S) -> (B, C_out, *S')`.

    Forward: `y = irfftn(X conj(K))` cropped, with `X`, `K` the transforms of the padded input and
    kernel and the channel mixing one real matrix product per frequency: a complex entry is a
    `(re, im)` pair, so `X` is `(F, B, 2 C_in)` and `conj(K)` the `(F, 2 C_in, 2 C_out)` matrix of
    2x2 blocks `[[re, -im], [im, re]]`. Backward, with `G = rfftn(dy)` (`dy` zero-filled to the
    padded size): `dx = irfftn(G K)` and `dk = irfftn(sum_b conj(G) X)`, cropped, the products
    again real ones (the transpose of the forward's). Autograd through `rfftn` instead runs a
    full complex transform of the padded input size per backward, and through a complex
    `einsum` resolves a conjugated view per frequency matrix: together over half the time."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, causal: bool, stride: int) -> Tensor:  # type: ignore[override]
        dim = x.ndim - 2
        spatial = tuple(x.shape[2:])
        left = _padding(kernel, causal)[-2::-2]  # per dimension, first to last
        sizes = tuple(_fft_size(size + k - 1) for size, k in zip(spatial, kernel.shape[2:]))  # no wrap-around from S + K - 1 on
        dims = tuple(range(2, 2 + dim))
        dtype = torch.promote_types(x.dtype, torch.float32)
        # padded, promoted and in the contiguous layout in one copy (the FFT of a channels-last tensor is slower)
        padded = x.new_zeros((*x.shape[:2], *sizes), dtype=dtype)
        padded[(..., *(slice(start, start + size) for start, size in zip(left, spatial)))] = x
        x_freq = torch.fft.rfftn(padded, s=sizes, dim=dims)
        del padded  # intermediates go as soon as they are used: the FFT path's peak memory is its cost on a GPU
        freq_shape = tuple(x_freq.shape[2:])
        x_real = _frequency_major(x_freq)
        del x_freq
        c_out, c_in = kernel.shape[:2]
        k_freq = torch.fft.rfftn(kernel.to(dtype), s=sizes, dim=dims)
        k = torch.view_as_real(_transposed(k_freq.reshape(c_out * c_in, -1))).view(-1, c_out, c_in, 2)  # (F, C_out, C_in, re|im)
        del k_freq
        out_freq = _batch_major(torch.bmm(x_real, _conj_blocks(k)), freq_shape)
        out = torch.fft.irfftn(out_freq, s=sizes, dim=dims)[(..., *(slice(0, size, stride) for size in spatial))]
        ctx.save_for_backward(x_real, k)
        ctx.geometry = (tuple(x.shape), tuple(kernel.shape), left, sizes, stride, x.dtype, kernel.dtype, freq_shape)
        return out.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        x_real, k = ctx.saved_tensors
        x_shape, k_shape, left, sizes, stride, x_dtype, k_dtype, freq_shape = ctx.geometry
        dims = tuple(range(2, len(x_shape)))
        spatial = x_shape[2:]
        filled = grad.new_zeros((*grad.shape[:2], *sizes), dtype=x_real.dtype)
        filled[(..., *(slice(0, size, stride) for size in spatial))] = grad
        grad_freq = torch.fft.rfftn(filled, s=sizes, dim=dims)
        del filled
        grad_real = _frequency_major(grad_freq)
        del grad_freq
        grad_x = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_x_freq = _batch_major(torch.bmm(grad_real, _conj_blocks(k).transpose(1, 2)), freq_shape)
            grad_x = torch.fft.irfftn(grad_x_freq, s=sizes, dim=dims)
            grad_x = grad_x[(..., *(slice(start, start + size) for start, size in zip(left, spatial)))].to(x_dtype)
        if ctx.needs_input_grad[1]:
            c_out, c_in = k_shape[:2]
            m = torch.bmm(x_real.transpose(1, 2), grad_real).view(-1, c_in, 2, c_out, 2)  # sum_b x_(re|im) g_(re|im)
            grad_k_freq = torch.complex(m[:, :, 0, :, 0] + m[:, :, 1, :, 1], m[:, :, 1, :, 0] - m[:, :, 0, :, 1])  # (F, C_in, C_out)
            grad_k_freq = _transposed(grad_k_freq.transpose(1, 2).reshape(-1, c_out * c_in)).view(c_out, c_in, *freq_shape)
            grad_k = torch.fft.irfftn(grad_k_freq, s=sizes, dim=dims)[(..., *(slice(0, k) for k in k_shape[2:]))].to(k_dtype)
        return grad_x, grad_k, None, None


def fft_conv(x: Tensor, kernel: Tensor, bias: Tensor | None = None, causal: bool = False, stride: int = 1) -> Tensor:
    """`(B, C_in, *S), (C_out, C_in, *K) -> (B, C_out, *ceil(S / stride))` through the FFT.

    With the input padded to at least `S + K - 1` per dimension, the circular cross-correlation of
    `rfftn(x) * conj(rfftn(kernel))` has no wrap-around in the `S` outputs kept. Computed in
    the input's precision (half precision is promoted to float32 for the transform); the
    backward is written out (`_FFTCorrelation`), once differentiable.
    """
    dim = _check(x, kernel, causal, stride)
    out = _FFTCorrelation.apply(x, kernel, causal, stride)  # a crop of the padded size
    if bias is None:
        return out.contiguous()  # a copy of the crop, so the padded result is not kept alive with it
    return out + bias.view(1, -1, *([1] * dim))


def fft_threshold_for(fft_threshold: FftThreshold, dim: int) -> int:
    """The threshold (kernel elements) for rank `dim` from `fft_threshold`: one int for every rank,
    a mapping `{"1d": ..., "2d": ...}` (a missing rank takes `FFT_THRESHOLDS`), or None for `FFT_THRESHOLDS`."""
    if fft_threshold is None:
        return FFT_THRESHOLDS[dim]
    if isinstance(fft_threshold, Mapping):
        unknown = set(fft_threshold) - {f"{rank}d" for rank in FFT_THRESHOLDS}
        if unknown:
            raise ValueError(f"continuous conv: fft_threshold keys must be {', '.join(f'{rank}d' for rank in FFT_THRESHOLDS)}, got {sorted(unknown)}")
        return int(fft_threshold.get(f"{dim}d", FFT_THRESHOLDS[dim]))
    return int(fft_threshold)


def use_fft(kernel_size: tuple[int, ...], impl: str, fft_threshold: FftThreshold = None) -> bool:
    """Whether `impl` (`auto`, `spatial`, `fft`) picks the FFT for a kernel of `kernel_size`:
    `auto` does when the kernel has at least `fft_threshold_for(fft_threshold, len(kernel_size))`
    elements (the spatial cost grows with them, the FFT's does not)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"continuous conv: impl={impl!r} must be one of {', '.join(IMPLEMENTATIONS)}")
    if impl == "auto":
        return math.prod(kernel_size) >= fft_threshold_for(fft_threshold, len(kernel_size))
    return impl == "fft"


def continuous_conv(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None = None,
    causal: bool = False,
    stride: int = 1,
    impl: str = "auto",
    fft_threshold: FftThreshold = None,
) -> Tensor:
    """Convolve with `kernel` by the implementation `impl` picks (see `use_fft`)."""
    _check(x, kernel, causal, stride)  # before the dispatch, which reads the rank
    conv = fft_conv if use_fft(tuple(kernel.shape[2:]), impl, fft_threshold) else spatial_conv
    return conv(x, kernel, bias, causal, stride)
