"""`construct_kernel`: DCLS kernel construction as a registered PyTorch operator.

The op `farconv::dcls_construct_kernel` (and its backward `farconv::dcls_construct_kernel_backward`)
is registered with `torch.library`, so autograd, `torch.compile`, fake tensors and the FLOP
counter of `run_profiler.py` see one operator. Implementations:

- `reference`: `layers/dcls/reference.py`, which (like `dcls` 0.1.1) materialises every
  element's spread over the whole kernel, `(C_out, C_in/g, K, d_1, ..., d_n)` per factor;
- `fused` (`auto` picks it on every device): every version's spread is a product of one
  profile per axis, so the kernel is a contraction over the K elements of `ndim` small
  `(C_out*C_in/g, K, d_a)` profiles, computed by batched matrix products (BLAS on CPU,
  cuBLAS on GPU). Its backward contracts the kernel's gradient with the same profiles.
  Memory: the kernel plus `ndim` profiles, never an `S^ndim * K` tensor per filter.

Precision: the op follows its inputs' dtype (`.half()`, `.bfloat16()` modules); under
autocast it runs in float32 (its cost is parameter-sized) and the convolution in the
autocast dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from layers.dcls import reference
from layers.dcls.reference import (
    EPSILON,
    GAUSS_SIGMA_OFFSET,
    MAX_WIDTH_OFFSET,
    NORMALISED,
    axis_profile,
    axis_sizes,
    gaussian,
    position_limits,
    triangle,
)

IMPLEMENTATIONS = ("auto", "reference", "fused")
_LETTERS = "xyz"


def _profiles(weight: Tensor, P: Tensor, SIG: Tensor | None, sizes: tuple[int, ...], version: str):
    """Per-filter coefficients `(N, K)` and per-axis profiles `[(N, K, d_a)]`, N = C_out*C_in/g."""
    rows = weight.shape[0] * weight.shape[1]
    profiles = [
        axis_profile(P[a].reshape(rows, -1), None if SIG is None else SIG[a].reshape(rows, -1), sizes[a], version)
        for a in range(len(sizes))
    ]
    coefficient = weight.reshape(rows, -1)
    if version in NORMALISED:
        mass = torch.stack([profile.sum(-1) for profile in profiles]).prod(0)
        coefficient = coefficient / (mass + EPSILON)
    return coefficient, profiles


def _subscripts(ndim: int) -> tuple[str, list[str]]:
    """Einsum subscripts of the kernel (`n` + spatial letters in input order) and of each
    profile (`P[a]` moves along spatial axis ndim-1-a)."""
    spatial = _LETTERS[:ndim]
    return "n" + spatial, ["nk" + spatial[ndim - 1 - a] for a in range(ndim)]


@torch.library.custom_op("farconv::dcls_construct_kernel", mutates_args=())
def _construct_op(weight: Tensor, P: Tensor, SIG: Tensor | None, dilated_kernel_size: list[int], version: str) -> Tensor:
    sizes = axis_sizes(tuple(dilated_kernel_size))
    coefficient, profiles = _profiles(weight, P, SIG, sizes, version)
    kernel_letters, profile_letters = _subscripts(len(sizes))
    kernel = torch.einsum(",".join(["nk", *profile_letters]) + "->" + kernel_letters, coefficient, *profiles)
    return kernel.reshape(*weight.shape[:2], *dilated_kernel_size).contiguous()


@_construct_op.register_fake
def _construct_fake(weight, P, SIG, dilated_kernel_size, version):
    return weight.new_empty(*weight.shape[:2], *dilated_kernel_size)


def _profile_derivatives(position: Tensor, sigma: Tensor | None, size: int, version: str):
    """An axis profile `(..., size)` and its derivatives in the position and in raw `SIG`,
    with the one-sided conventions of `reference.axis_profile` (where autograd finds them)."""
    low, high = position_limits(size)
    index = torch.arange(size, device=position.device, dtype=position.dtype) - (size // 2)
    mirror = torch.where(position >= high, -1.0, 1.0).to(position.dtype).unsqueeze(-1)
    offset = mirror * (index - position.unsqueeze(-1))
    sign = None if sigma is None else torch.where(sigma >= 0, 1.0, -1.0).to(position.dtype).unsqueeze(-1)
    if version == "gauss":
        width = (sigma.abs() + GAUSS_SIGMA_OFFSET).unsqueeze(-1)
        profile = gaussian(offset, width)
        d_offset = -profile * offset / width**2
        d_sigma = profile * offset**2 / width**3 * sign
        return profile, -mirror * d_offset, d_sigma
    width = 1.0 if sigma is None else (sigma.abs() + MAX_WIDTH_OFFSET).unsqueeze(-1)
    rising = (offset > -width) & (offset <= 0)
    falling = (offset > 0) & (offset <= width)
    profile = triangle(offset, width)
    d_offset = rising.to(position.dtype) - falling.to(position.dtype)
    d_sigma = None if sigma is None else (rising | falling).to(position.dtype) * sign
    return profile, -mirror * d_offset, d_sigma


@torch.library.custom_op("farconv::dcls_construct_kernel_backward", mutates_args=())
def _construct_backward_op(
    grad_kernel: Tensor, weight: Tensor, P: Tensor, SIG: Tensor | None, dilated_kernel_size: list[int], version: str
) -> list[Tensor]:
    """Returns `[grad_weight, grad_P, grad_SIG]` (`grad_SIG` empty when SIG is None)."""
    sizes = axis_sizes(tuple(dilated_kernel_size))
    ndim = len(sizes)
    rows = weight.shape[0] * weight.shape[1]
    kernel_letters, profile_letters = _subscripts(ndim)
    grad_kernel = grad_kernel.reshape(rows, *dilated_kernel_size)
    axes = [
        _profile_derivatives(P[a].reshape(rows, -1), None if SIG is None else SIG[a].reshape(rows, -1), sizes[a], version)
        for a in range(ndim)
    ]
    profiles = [axis[0] for axis in axes]
    weight = weight.reshape(rows, -1)
    coefficient = weight
    if version in NORMALISED:
        masses = torch.stack([profile.sum(-1) for profile in profiles])
        normaliser = masses.prod(0) + EPSILON
        coefficient = weight / normaliser
    # The kernel is multilinear in (coefficient, profiles): contracting its gradient with all
    # factors but one gives that factor's gradient.
    grad_coefficient = torch.einsum(",".join([kernel_letters, *profile_letters]) + "->nk", grad_kernel, *profiles)
    grad_weight = grad_coefficient / normaliser if version in NORMALISED else grad_coefficient
    grad_P, grad_SIG = [], []
    for a in range(ndim):
        others = [profiles[b] for b in range(ndim) if b != a]
        if others:
            other_letters = [profile_letters[b] for b in range(ndim) if b != a]
            subscripts = ",".join([kernel_letters, *other_letters]) + "->" + profile_letters[a]
            contracted = torch.einsum(subscripts, grad_kernel, *others)
        else:  # 1-D: the kernel's gradient is the profile's, for every element
            contracted = grad_kernel.unsqueeze(1)
        grad_profile = contracted * coefficient.unsqueeze(-1)
        if version in NORMALISED:  # through the normaliser: d mass / d profile_a = prod of the other masses
            other_mass = torch.cat([masses[:a], masses[a + 1 :]]).prod(0)
            grad_profile = grad_profile - (grad_coefficient * weight / normaliser**2 * other_mass).unsqueeze(-1)
        _, d_position, d_sigma = axes[a]
        grad_P.append((grad_profile * d_position).sum(-1))
        if d_sigma is not None:
            grad_SIG.append((grad_profile * d_sigma).sum(-1))
    grad_P = torch.stack(grad_P).reshape(P.shape)
    grad_SIG = torch.stack(grad_SIG).reshape(P.shape) if grad_SIG else weight.new_empty(0)
    return [grad_weight.reshape(-1).view(P.shape[1:]), grad_P, grad_SIG]


@_construct_backward_op.register_fake
def _construct_backward_fake(grad_kernel, weight, P, SIG, dilated_kernel_size, version):
    return [torch.empty_like(weight), torch.empty_like(P), weight.new_empty(0) if SIG is None else torch.empty_like(SIG)]


def _setup_context(ctx, inputs, output) -> None:
    weight, P, SIG, dilated_kernel_size, version = inputs
    ctx.save_for_backward(weight, P, SIG)
    ctx.settings = (dilated_kernel_size, version)


def _backward(ctx, grad_kernel):
    weight, P, SIG = ctx.saved_tensors
    grad_weight, grad_P, grad_SIG = torch.ops.farconv.dcls_construct_kernel_backward(
        grad_kernel.contiguous(), weight, P, SIG, *ctx.settings
    )
    return grad_weight, grad_P, (grad_SIG if SIG is not None else None), None, None


_construct_op.register_autograd(_backward, setup_context=_setup_context)
# Under autocast the construction (parameter-sized work, with positions that need more than
# bf16's 8 bits) runs in float32 with autocast off, so the kernel and its gradient keep one
# dtype whether the backward runs inside autocast or not; the convolution that follows runs
# in the autocast dtype.
for _device_type in ("cpu", "cuda"):
    torch.library.register_autocast(_construct_op, _device_type, torch.float32)


def macs(weight_shape: torch.Size, dilated_kernel_size: list[int]) -> int:
    """Multiply-accumulates of the fused construction: one per element, kernel tap and
    filter in the final contraction (the per-axis profiles are not counted)."""
    filters, count = weight_shape[0] * weight_shape[1], weight_shape[2]
    return int(filters * count * torch.Size(dilated_kernel_size).numel())


@register_flop_formula(torch.ops.farconv.dcls_construct_kernel)
def _construct_flops(weight_shape, P_shape, SIG_shape, dilated_kernel_size, version, *, out_shape, **kwargs) -> int:
    return 2 * macs(weight_shape, dilated_kernel_size)


def check_arguments(weight: Tensor, P: Tensor, SIG: Tensor | None, dilated_kernel_size, version: str, impl: str) -> None:
    """Raise `ValueError` naming the first argument that does not fit."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"dcls construct_kernel: impl={impl!r} is not one of {IMPLEMENTATIONS}")
    if version not in reference.VERSIONS:
        raise ValueError(f"dcls construct_kernel: version={version!r} is not one of {reference.VERSIONS}")
    ndim = len(dilated_kernel_size)
    if weight.ndim != 3:
        raise ValueError(f"dcls construct_kernel: weight must be (C_out, C_in/g, K), got {tuple(weight.shape)}")
    if tuple(P.shape) != (ndim, *weight.shape):
        raise ValueError(f"dcls construct_kernel: P must be {(ndim, *weight.shape)}, got {tuple(P.shape)}")
    if (SIG is None) != (version in ("v0", "v1")):
        raise ValueError(f"dcls construct_kernel: version={version!r} {'takes no' if SIG is not None else 'needs a'} SIG")
    if SIG is not None and SIG.shape != P.shape:
        raise ValueError(f"dcls construct_kernel: SIG must have P's shape {tuple(P.shape)}, got {tuple(SIG.shape)}")


def construct_kernel(
    weight: Tensor,
    P: Tensor,
    SIG: Tensor | None,
    dilated_kernel_size: tuple[int, ...],
    version: str = "gauss",
    impl: str = "auto",
) -> Tensor:
    """The dense dilated kernel `(C_out, C_in/g, d_1, ..., d_n)` of a DCLS convolution.

    Args:
        weight: `(C_out, C_in/g, K)`.
        P: `(n, C_out, C_in/g, K)` centred positions, `P[0]` along the last spatial axis.
        SIG: `(n, C_out, C_in/g, K)` for `max` and `gauss`, else None.
        dilated_kernel_size: `(d_1, ..., d_n)` in the input's axis order.
        version: `v0`, `v1`, `max` or `gauss` (see `layers/dcls/reference.py`).
        impl: `auto`, `reference` or `fused` (see the module docstring).
    """
    check_arguments(weight, P, SIG, dilated_kernel_size, version, impl)
    if impl == "reference":
        return reference.construct_kernel(weight, P, SIG, tuple(dilated_kernel_size), version)
    return torch.ops.farconv.dcls_construct_kernel(weight, P, SIG, list(dilated_kernel_size), version)
