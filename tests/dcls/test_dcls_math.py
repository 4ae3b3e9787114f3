"""The math of DCLS kernel construction: hand-computed kernels, reference vs fused op,
gradcheck of every version and rank, and the fixes over `dcls` 0.1.1 (each pinned)."""

from __future__ import annotations

import pytest
import torch

from layers.dcls import construct_kernel
from layers.dcls.reference import VERSIONS

IMPLS = ["reference", "fused"]
SIZES = {1: (7,), 2: (7, 3), 3: (5, 3, 4)}  # non-square and even on purpose


def parameters(ndim: int, version: str, sizes, generator, filters=(3, 2), count=4, dtype=torch.float64):
    weight = torch.randn(*filters, count, generator=generator, dtype=dtype)
    spans = torch.tensor([s // 2 for s in reversed(sizes)], dtype=dtype).reshape(ndim, 1, 1, 1)
    P = (2 * torch.rand(ndim, *filters, count, generator=generator, dtype=dtype) - 1) * spans
    SIG = None
    if version in ("max", "gauss"):
        SIG = 0.1 + torch.rand(ndim, *filters, count, generator=generator, dtype=dtype)
    return weight, P, SIG


def one(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64).reshape(1, 1, 1)


# --- hand-computed kernels ------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_bilinear_splits_a_weight_between_neighbours(impl):
    # 2-D, (rows, columns) = (5, 3); P[0] = x = column offset, P[1] = y = row offset
    weight, P = one(2.0), torch.tensor([0.25, -1.5], dtype=torch.float64).reshape(2, 1, 1, 1)
    kernel = construct_kernel(weight, P, None, (5, 3), "v0", impl)[0, 0]
    expected = torch.zeros(5, 3, dtype=torch.float64)
    # row centre 2, y = -1.5 -> rows 0 and 1 by halves; column centre 1, x = 0.25 -> 1 (0.75), 2 (0.25)
    for row, row_weight in ((0, 0.5), (1, 0.5)):
        for column, column_weight in ((1, 0.75), (2, 0.25)):
            expected[row, column] = 2.0 * row_weight * column_weight
    torch.testing.assert_close(kernel, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_normalised_versions_keep_the_weight_on_the_border(impl):
    # x = 1.5 on a 3-wide axis: half of the spread falls outside; v0 loses it, v1 renormalises
    weight, P = one(1.0), torch.tensor([1.5], dtype=torch.float64).reshape(1, 1, 1, 1)
    v0 = construct_kernel(weight, P, None, (3,), "v0", impl)[0, 0]
    v1 = construct_kernel(weight, P, None, (3,), "v1", impl)[0, 0]
    torch.testing.assert_close(v0, torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(v1, torch.tensor([0.0, 0.0, 1 / (1 + 1e-7)], dtype=torch.float64))


@pytest.mark.parametrize("impl", IMPLS)
def test_gaussian_and_triangle_profiles(impl):
    weight, P = one(1.0), torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    sigma = torch.tensor(0.73, dtype=torch.float64).reshape(1, 1, 1, 1)  # deviation 1.0
    gauss = construct_kernel(weight, P, sigma, (5,), "gauss", impl)[0, 0]
    values = torch.exp(-0.5 * torch.arange(-2.0, 3.0, dtype=torch.float64) ** 2)
    torch.testing.assert_close(gauss, values / (values.sum() + 1e-7))
    # max: half-width |SIG| + 1 = 2 -> taps 1, 2, 1 around the centre (then normalised)
    triangle = construct_kernel(weight, P, torch.ones_like(sigma), (5,), "max", impl)[0, 0]
    torch.testing.assert_close(triangle, torch.tensor([0.0, 1, 2, 1, 0], dtype=torch.float64) / (4 + 1e-7))


# --- reference vs fused, gradcheck ----------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("version", VERSIONS)
def test_fused_matches_reference_values_and_gradients(ndim, version):
    generator = torch.Generator().manual_seed(ndim * 10 + VERSIONS.index(version))
    inputs = parameters(ndim, version, SIZES[ndim], generator)
    leaves = [t.requires_grad_() for t in inputs if t is not None]
    kernels = [construct_kernel(*inputs, SIZES[ndim], version, impl) for impl in IMPLS]
    torch.testing.assert_close(kernels[0], kernels[1], rtol=1e-12, atol=1e-12)
    assert kernels[0].shape == (3, 2, *SIZES[ndim])
    grad = torch.randn(kernels[0].shape, generator=generator, dtype=torch.float64)
    reference, fused = (torch.autograd.grad(k, leaves, grad) for k in kernels)
    for r, f in zip(reference, fused):
        torch.testing.assert_close(r, f, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck(ndim, version, impl):
    generator = torch.Generator().manual_seed(7 + ndim)
    sizes = SIZES[ndim] if ndim < 3 else (3, 3, 4)
    inputs = parameters(ndim, version, sizes, generator, filters=(2, 1), count=2)
    leaves = [t.requires_grad_() for t in inputs if t is not None]

    def build(*tensors):
        sig = tensors[2] if len(tensors) == 3 else None
        return construct_kernel(tensors[0], tensors[1], sig, sizes, version, impl)

    assert torch.autograd.gradcheck(build, leaves)


# --- fixes over dcls 0.1.1 -------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("version", ["v0", "v1", "max"])
def test_integer_positions_and_clamp_limits_keep_a_position_gradient(impl, version):
    # positions on the grid (0, 1), on the lower limit (-3) and on the upper one (+3), size 7
    P = torch.tensor([0.0, 1.0, -3.0, 3.0], dtype=torch.float64).reshape(1, 1, 1, 4).requires_grad_()
    weight = torch.ones(1, 1, 4, dtype=torch.float64)
    SIG = torch.zeros_like(P).requires_grad_() if version == "max" else None  # max's initial SIG
    kernel = construct_kernel(weight, P, SIG, (7,), version, impl)
    target = torch.arange(7, dtype=torch.float64)  # a loss that cares where the weight sits
    (kernel[0, 0] * target).sum().backward()
    assert (P.grad.abs() > 0.5).all(), P.grad
    if SIG is not None:
        assert (SIG.grad != 0).all(), SIG.grad  # |SIG| at 0 still trains


@pytest.mark.parametrize("impl", IMPLS)
def test_upper_limit_gradient_points_into_the_kernel(impl):
    # on the upper limit, moving up is impossible: the derivative is the one moving down,
    # which for a loss rewarding the last tap asks the position to stay (negative gradient)
    P = torch.tensor([3.0], dtype=torch.float64).reshape(1, 1, 1, 1).requires_grad_()
    kernel = construct_kernel(torch.ones(1, 1, 1, dtype=torch.float64), P, None, (7,), "v1", impl)
    (-kernel[0, 0, 6]).backward()
    assert P.grad.item() < 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("version", VERSIONS)
def test_non_square_kernel_centres_each_axis_on_its_own_size(impl, version):
    # a single element at position 0 lands on the centre (3, 1) of a (7, 3) kernel
    sig = torch.full((2, 1, 1, 1), 0.01, dtype=torch.float64) if version in ("max", "gauss") else None
    kernel = construct_kernel(one(1.0), torch.zeros(2, 1, 1, 1, dtype=torch.float64), sig, (7, 3), version, impl)[0, 0]
    assert kernel.shape == (7, 3)
    assert kernel.argmax().item() == 3 * 3 + 1
    assert kernel[3, 1].item() == pytest.approx(1.0, abs=0.05)  # max and gauss spread a little


def test_errors_name_the_bad_value():
    weight, P = torch.zeros(1, 1, 2), torch.zeros(2, 1, 1, 2)
    with pytest.raises(ValueError, match="version='v2'"):
        construct_kernel(weight, P, None, (3, 3), "v2")
    with pytest.raises(ValueError, match="needs a SIG"):
        construct_kernel(weight, P, None, (3, 3), "gauss")
    with pytest.raises(ValueError, match="P must be"):
        construct_kernel(weight, P[:1], None, (3, 3), "v1")
    with pytest.raises(ValueError, match="impl='cuda'"):
        construct_kernel(weight, P, None, (3, 3), "v1", impl="cuda")
