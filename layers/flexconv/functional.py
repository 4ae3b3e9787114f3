"""Convolution with a generated kernel: spatial (`F.conv1d/2d`) or FFT, chosen by kernel size.

Both compute the same cross-correlation (PyTorch's convention): 1-D causally (the input is
padded on the left by `K - 1`, so output `t` sees inputs `t - K + 1 .. t` and the last
kernel tap multiplies the current sample), 2-D with centred `same` padding (odd kernels).
The spatial path costs `O(S K)` per channel pair, the FFT path `O(S log S)` whatever the
kernel size, which is what makes kernels as large as the input affordable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLEMENTATIONS = ("auto", "spatial", "fft")
_CONV = {1: F.conv1d, 2: F.conv2d}


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
    """`(B, C_in, *S), (C_out, C_in, *K) -> (B, C_out, *ceil(S / stride))` by direct convolution."""
    dim = _check(x, kernel, causal, stride)
    if causal:  # asymmetric: the input is padded on the left only
        return _CONV[dim](F.pad(x, _padding(kernel, causal)), kernel, bias, stride=stride)
    return _CONV[dim](x, kernel, bias, stride=stride, padding=tuple((size - 1) // 2 for size in kernel.shape[2:]))


def fft_conv(x: Tensor, kernel: Tensor, bias: Tensor | None = None, causal: bool = False, stride: int = 1) -> Tensor:
    """`(B, C_in, *S), (C_out, C_in, *K) -> (B, C_out, *ceil(S / stride))` through the FFT.

    With the input padded to `S + K - 1` per dimension, the circular cross-correlation of
    `rfftn(x) * conj(rfftn(kernel))` has no wrap-around in the `S` outputs kept. Computed in
    the input's precision (half precision is promoted to float32 for the transform).
    """
    dim = _check(x, kernel, causal, stride)
    spatial = tuple(x.shape[2:])
    padded = F.pad(x, _padding(kernel, causal))
    sizes = tuple(padded.shape[2:])
    dims = tuple(range(2, 2 + dim))
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    x_freq = torch.fft.rfftn(padded.to(compute_dtype), s=sizes, dim=dims)
    k_freq = torch.fft.rfftn(kernel.to(compute_dtype), s=sizes, dim=dims)
    # channel mixing per frequency: (B, C_in, F) x (C_out, C_in, F) -> (B, C_out, F)
    out_freq = torch.einsum("bi...,oi...->bo...", x_freq, k_freq.conj())
    out = torch.fft.irfftn(out_freq, s=sizes, dim=dims)
    out = out[(..., *(slice(0, size, stride) for size in spatial))].to(x.dtype)
    if bias is not None:
        out = out + bias.view(1, -1, *([1] * dim))
    return out


def use_fft(kernel_size: tuple[int, ...], impl: str, fft_threshold: int) -> bool:
    """Whether `impl` (`auto`, `spatial`, `fft`) picks the FFT for a kernel of `kernel_size`:
    `auto` does when the kernel has at least `fft_threshold` elements (the spatial cost grows
    with them, the FFT's does not)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"continuous conv: impl={impl!r} must be one of {', '.join(IMPLEMENTATIONS)}")
    if impl == "auto":
        return math.prod(kernel_size) >= fft_threshold
    return impl == "fft"


def continuous_conv(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None = None,
    causal: bool = False,
    stride: int = 1,
    impl: str = "auto",
    fft_threshold: int = 64,
) -> Tensor:
    """Convolve with `kernel` by the implementation `impl` picks (see `use_fft`)."""
    conv = fft_conv if use_fft(tuple(kernel.shape[2:]), impl, fft_threshold) else spatial_conv
    return conv(x, kernel, bias, causal, stride)
