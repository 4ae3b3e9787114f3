"""CKConv: Continuous Kernel Convolution (Romero, Kuzina, Bekkers, Tomczak, Hoogendoorn,
ICLR 2022, arXiv:2102.02611).

The kernel is not a table of weights but a small network (`layers.flexconv.kernelnets`)
evaluated on a grid of relative positions in `[-1, 1]^D`, so its size is decoupled from
its parameter count and the same kernel can be sampled at any resolution. 1-D layers are
causal (sequence models); 2-D layers use centred `same` padding.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from layers.flexconv.functional import IMPLEMENTATIONS, FftThreshold, continuous_conv, fft_threshold_for
from layers.flexconv.grid import Horizon, PositionGrid, check_horizon, grid_size
from layers.flexconv.kernelnets import MAGNet, MultiplicativeFilterNet
from layers.flexconv.kernelnets.base import KernelNetFactory
from layers.flexconv.regularizer import FORMS, INITS, TARGETS, anti_aliasing_penalty, nyquist_frequency


class CKConv(nn.Module):
    """Continuous kernel convolution of rank `dim`: `(B, C_in, *S) -> (B, C_out, *ceil(S / stride))`.

    Args:
        in_channels, out_channels: channels `C_in`, `C_out`.
        dim: spatial rank, 1 (causal) or 2 (`same`).
        horizon: samples of the kernel grid: `same` (the input's size, odd in 2-D), `full`
            (`2 S - 1`) or an odd int.
        kernel_net: builds the kernel network, called as `kernel_net(dim, C_out * C_in, init_extent)`
            (a partial of `MAGNet`, `GaborNet`, `FourierNet`, `SIREN` or `MLP`).
        bias: add a learned bias per output channel.
        stride: output subsampling.
        sampling_rate_norm: multiplies the kernel; `(source / target)^dim` keeps the response of a
            kernel trained at one resolution when it is sampled at another (see `resample_kernels`).
        impl: `auto` (FFT once the kernel has `fft_threshold` elements), `spatial` or `fft`.
        fft_threshold: kernel elements (product of its sizes) from which `auto` uses the FFT: an
            int, a mapping per rank `{"1d": ..., "2d": ...}`, or None for the crossover
            `benchmarks/flexconv.py` measured on a CPU (`layers.flexconv.functional.FFT_THRESHOLDS`).
        regularize_target: `gabor` adds the anti-aliasing penalty of the kernel network's Gabor
            filters to the training loss (`auxiliary_loss`); None disables it.
        regularize_factor: weight of that penalty.
        regularize_gauss_stddevs: standard deviations of a Gaussian envelope's spectrum counted
            as its bandwidth (3: where the spectrum is down to 1%; at the paper's 2 it is 14%, which
            the kernels then pass above the Nyquist frequency; `experiments/crossres/RESULTS.md`
            compares the two).
        regularize_form: `hinge` penalises every unit above its share of the Nyquist frequency,
            `max` (the paper's) each filter's highest unit (see `layers.flexconv.regularizer`).
        regularize_init: with a regularize target, `nyquist` band-limits the kernel network
            (FlexConv with `gabor+mask`: and its mask) for the grid of the first training
            forward, once (the `band_limited` buffer records it, so a loaded checkpoint is
            left as it is); `paper` keeps the published initialisation.
    """

    #: The kernel starts over this half-width of `[-1, 1]` (FlexConv narrows it to its mask).
    init_extent = 1.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        horizon: Horizon = "same",
        *,
        kernel_net: KernelNetFactory = MAGNet,
        bias: bool = True,
        stride: int = 1,
        sampling_rate_norm: float = 1.0,
        impl: str = "auto",
        fft_threshold: FftThreshold = None,
        regularize_target: str | None = None,
        regularize_factor: float = 0.1,
        regularize_gauss_stddevs: float = 3.0,
        regularize_form: str = "hinge",
        regularize_init: str = "nyquist",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} must be >= 1")
        if dim not in (1, 2):
            raise ValueError(f"{name}: dim={dim} must be 1 (causal sequences) or 2 (images)")
        if isinstance(fft_threshold, Mapping):
            fft_threshold = dict(fft_threshold)  # a plain dict, also when Hydra passes a DictConfig
        if stride < 1 or sampling_rate_norm <= 0 or fft_threshold_for(fft_threshold, dim) < 1:
            raise ValueError(f"{name}: stride={stride} and fft_threshold={fft_threshold} must be >= 1, sampling_rate_norm={sampling_rate_norm} > 0")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"{name}: impl={impl!r} must be one of {', '.join(IMPLEMENTATIONS)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dim = dim
        self.causal = dim == 1
        self.horizon = check_horizon(horizon, name)
        self.stride = stride
        self.impl = impl
        self.fft_threshold = fft_threshold
        self.kernel_net = kernel_net(dim, out_channels * in_channels, init_extent=self.init_extent)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # a buffer, so a checkpoint fine-tuned at another resolution keeps its normaliser
        self.register_buffer("sampling_rate_norm", torch.tensor(float(sampling_rate_norm)))
        self._check_regularizer(regularize_target, regularize_factor, regularize_gauss_stddevs, regularize_form, regularize_init)
        self.regularize_target = regularize_target
        self.regularize_factor = regularize_factor
        self.regularize_gauss_stddevs = regularize_gauss_stddevs
        self.regularize_form = regularize_form
        self.regularize_init = regularize_init
        self.register_buffer("band_limited", torch.tensor(regularize_target is None or regularize_init == "paper"))
        self._band_limit_pending = not bool(self.band_limited)  # mirrors the buffer without a device sync per forward
        self._grid = PositionGrid()
        self.grid_size: tuple[int, ...] | None = grid_size(self.horizon, (1,) * dim, self.causal) if isinstance(self.horizon, int) else None
        self.kernel_size: tuple[int, ...] | None = None  # of the last kernel generated
        self._kernel_cache: tuple[tuple, Tensor, tuple[int, ...], tuple[int, ...]] | None = None

    def _check_regularizer(self, target: str | None, factor: float, gauss_stddevs: float, form: str, init: str) -> None:
        name = type(self).__name__
        if form not in FORMS or init not in INITS:
            raise ValueError(f"{name}: regularize form={form!r} must be one of {', '.join(FORMS)} and init={init!r} one of {', '.join(INITS)}")
        allowed = self.regularize_targets()
        if target is not None and target not in allowed:
            raise ValueError(f"{name}: regularize target={target!r} must be null or one of {', '.join(allowed)}")
        if target is not None and not isinstance(self.kernel_net, MultiplicativeFilterNet):
            raise ValueError(
                f"{name}: anti-aliasing regularisation needs a Gabor kernel network (kernel=magnet or gabor), got {type(self.kernel_net).__name__}"
            )
        if factor < 0 or gauss_stddevs < 0:
            raise ValueError(f"{name}: regularize factor={factor} and gauss_stddevs={gauss_stddevs} must be >= 0")

    def regularize_targets(self) -> tuple[str, ...]:
        return TARGETS[:1]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, dim={self.dim}, horizon={self.horizon!r}, stride={self.stride}, impl={self.impl!r}"

    def resolution_ratio(self) -> float:
        """How many times finer the current grid is than the one the kernel was trained on,
        read from the normaliser `sampling_rate_norm = (source / target)^dim`."""
        return float(self.sampling_rate_norm) ** (-1.0 / self.dim)

    def kernel_axes(self, sizes: Sequence[int], reference: Tensor) -> list[Tensor]:
        """The 1-D coordinates the kernel is sampled at, per dimension (CKConv: the whole grid)."""
        dtype = reference.dtype if reference.is_floating_point() else torch.get_default_dtype()
        return [self._grid.axis(size, reference.device, dtype) for size in sizes]

    def envelope(self, axes: Sequence[Tensor]) -> Tensor | None:
        """A factor `(*K)` the kernel is multiplied by (FlexConv: its mask); None for CKConv."""
        return None

    def generate_kernel(self, input_size: Sequence[int], reference: Tensor | None = None) -> Tensor:
        """The kernel `(C_out, C_in, *K)` this layer applies to inputs of spatial size `input_size`."""
        reference = self.kernel_net.output.weight if reference is None else reference
        self.grid_size = grid_size(self.horizon, input_size, self.causal)
        axes = self.kernel_axes(self.grid_size, reference)
        shape = tuple(len(axis) for axis in axes)
        positions = self._grid.positions(axes)
        envelope = self.envelope(axes)
        norm = self.sampling_rate_norm.to(positions.dtype)
        scale = norm.expand(len(positions)) if envelope is None else envelope.reshape(-1) * norm
        kernel = self.kernel_net(positions, scale).view(self.out_channels, self.in_channels, *shape)  # (C_out * C_in, P) viewed
        self.kernel_size = shape
        return kernel

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            shape = "(B, C, L)" if self.dim == 1 else "(B, C, H, W)"
            raise ValueError(f"{type(self).__name__}: input of shape {tuple(x.shape)} must be {shape} with C={self.in_channels}")
        if self._band_limit_pending and self.training:
            self.band_limit(grid_size(self.horizon, x.shape[2:], self.causal))
        kernel = self._kernel_for(x)
        return continuous_conv(x, kernel, self.bias, self.causal, self.stride, self.impl, self.fft_threshold)

    def _kernel_for(self, x: Tensor) -> Tensor:
        """The kernel for input `x`; in eval mode without autograd, the last one again while the
        layer's parameters and buffers (their storage and `_version`, which every in-place update
        bumps), settings, input size, dtype and device are unchanged. Training mode, autograd or
        `torch.compile` always generate it afresh (and drop what was kept)."""
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            self._kernel_cache = None
            return self.generate_kernel(x.shape[2:], x).to(x.dtype)
        state = tuple((tensor.data_ptr(), tensor._version) for tensor in (*self.parameters(), *self.buffers()))
        key = (tuple(x.shape[2:]), x.dtype, x.device, self.extra_repr(), state)
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            kernel = self.generate_kernel(x.shape[2:], x).to(x.dtype)
            self._kernel_cache = (key, kernel, self.grid_size, self.kernel_size)
        _, kernel, self.grid_size, self.kernel_size = self._kernel_cache
        return kernel

    def auxiliary_loss(self) -> Tensor | None:
        """The weighted anti-aliasing penalty at the last grid size (`layers.factory.AuxiliaryLoss`);
        None without regularisation or before the first forward."""
        if self.regularize_target is None or self.grid_size is None:
            return None
        frequencies = self.kernel_net.unit_frequencies(self.regularize_gauss_stddevs)
        penalty = anti_aliasing_penalty(frequencies, min(self.grid_size), self.extra_frequency(), self.regularize_form)
        return self.regularize_factor * penalty

    @torch.no_grad()
    def band_limit(self, grid: Sequence[int]) -> None:
        """Bring the kernel within the Nyquist frequency of `grid` (the `regularize_init="nyquist"`
        initialisation; see `layers.flexconv.regularizer`) and record it in `band_limited`."""
        budget = nyquist_frequency(min(grid))
        spent = self.limit_extra_bandwidth(budget)
        self.kernel_net.limit_bandwidth(budget - spent, self.regularize_gauss_stddevs)
        self.band_limited.fill_(True)
        self._band_limit_pending = False

    def limit_extra_bandwidth(self, budget: float) -> float:
        """Bring what the layer adds to the kernel network's bandwidth (`extra_frequency`) within a
        share of `budget`; returns the bandwidth it then takes (CKConv: nothing)."""
        return 0.0

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
        # weights saved before the `band_limited` buffer existed (or converted from the
        # reference) are trained weights: they are never band-limited again
        key = prefix + "band_limited"
        if key not in state_dict:
            state_dict[key] = torch.tensor(True)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        self._band_limit_pending = not bool(self.band_limited)

    def extra_frequency(self) -> Tensor | None:
        """Bandwidth added to the kernel network's by the layer (FlexConv: its mask with `gabor+mask`)."""
        return None


class CKConv1d(CKConv):
    """Causal 1-D continuous kernel convolution, `(B, C_in, L) -> (B, C_out, ceil(L / stride))`.
    Arguments as for `CKConv` (without `dim`)."""

    def __init__(self, in_channels: int, out_channels: int, horizon: Horizon = "same", **options) -> None:
        super().__init__(in_channels, out_channels, 1, horizon, **options)


class CKConv2d(CKConv):
    """2-D continuous kernel convolution with `same` padding, `(B, C_in, H, W) -> (B, C_out, H', W')`.
    Arguments as for `CKConv` (without `dim`)."""

    def __init__(self, in_channels: int, out_channels: int, horizon: Horizon = "same", **options) -> None:
        super().__init__(in_channels, out_channels, 2, horizon, **options)
