"""`Dcls1d/2d/3d`: equality with `dcls` 0.1.1 (same init, outputs and gradients for square
kernels), the dense-kernel equivalent, clamping, dtypes, options, and a learning test."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from layers.dcls import Dcls1d, Dcls2d, Dcls3d
from layers.dcls.dcls_layer import repulsion

LAYERS = {1: Dcls1d, 2: Dcls2d, 3: Dcls3d}
# dcls 0.1.1's v0 orders P's axes as (rows, columns) in 2-D and (depth, width, height) in
# 3-D; v1/max/gauss (and every version here) as (x, y, z). Row a of theirs is row perm[a] of ours.
DCLS_V0_AXES = {1: [0], 2: [1, 0], 3: [2, 0, 1]}


@pytest.fixture(scope="module")
def DCLS():
    modules = pytest.importorskip("DCLS.construct.modules", reason="needs the test dependency dcls==0.1.1")
    logging.getLogger().setLevel(logging.ERROR)  # dcls warns about its CUDA-only GEMM on every Dcls2d
    return modules


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("version", ["v0", "v1", "max", "gauss"])
def test_equal_to_dcls_0_1_1(DCLS, ndim, version):
    theirs_cls = {1: DCLS.Dcls1d, 2: DCLS.Dcls2d, 3: DCLS.Dcls3d}[ndim]
    options = dict(stride=1, padding=2, dilated_kernel_size=5, groups=2, version=version)
    torch.manual_seed(3)
    ours = LAYERS[ndim](4, 6, 5, **options).double()
    torch.manual_seed(3)
    theirs = theirs_cls(4, 6, 5, **options).double()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(a, b), name  # same init, same order of random draws
    with torch.no_grad():  # off the grid and SIG != 0: there dcls' gradients vanish (see the math tests)
        ours.P.add_(0.123)
        if ours.SIG is not None:
            ours.SIG.add_(0.37)
            theirs.SIG.copy_(ours.SIG)
        if version == "v0":
            theirs.P.copy_(ours.P[DCLS_V0_AXES[ndim]])
        else:
            theirs.P.copy_(ours.P)
    x = torch.randn(2, 4, *([8] * ndim), dtype=torch.float64)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(out_ours)
    out_ours.backward(grad)
    out_theirs.backward(grad)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        expected = b.grad
        if name == "P" and version == "v0":  # their row a is our row perm[a]
            expected = torch.empty_like(b.grad).index_copy_(0, torch.tensor(DCLS_V0_AXES[ndim]), b.grad)
        torch.testing.assert_close(a.grad, expected, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("version", ["v1", "gauss"])
def test_forward_is_a_dense_convolution_with_the_constructed_kernel(version):
    torch.manual_seed(0)
    layer = Dcls2d(3, 4, 6, stride=2, padding=(3, 1), dilated_kernel_size=(7, 3), version=version).double()
    x = torch.randn(2, 3, 11, 9, dtype=torch.float64)
    expected = F.conv2d(x, layer.kernel(), layer.bias, stride=2, padding=(3, 1))
    torch.testing.assert_close(layer(x), expected)
    assert layer(x).shape == (2, 4, 6, 5)


def test_padding_modes_pad_before_the_convolution():
    torch.manual_seed(0)
    layer = Dcls1d(2, 2, 3, padding=3, dilated_kernel_size=7, padding_mode="circular").double()
    x = torch.randn(1, 2, 10, dtype=torch.float64)
    expected = F.conv1d(F.pad(x, (3, 3), mode="circular"), layer.kernel(), layer.bias)
    torch.testing.assert_close(layer(x), expected)


def test_clamp_keeps_positions_inside_non_square_even_kernels():
    layer = Dcls2d(1, 1, 4, dilated_kernel_size=(7, 4), version="v1")
    with torch.no_grad():
        layer.P.fill_(100.0)
    layer.clamp_parameters()
    assert layer.P[0].max().item() == 1  # x, width 4: taps -2..1
    assert layer.P[1].max().item() == 3  # y, height 7: taps -3..3
    with torch.no_grad():
        layer.P.fill_(-100.0)
    layer.clamp_parameters()
    assert layer.P[0].min().item() == -2 and layer.P[1].min().item() == -3


def _forward_backward(layer, x, autocast_dtype=None):
    """The layer's output and the gradients of its parameters for a fixed upstream gradient;
    the forward under CPU autocast when `autocast_dtype` is given, the backward outside it (as
    in a training step)."""
    layer.zero_grad()
    with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = layer(x)
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype))
    return out, {name: p.grad.clone() for name, p in layer.named_parameters()}


def _assert_close_in_bf16(low, exact):
    # bf16 keeps 8 significant bits: compare at a few of its steps relative to the tensor's scale
    scale = exact.abs().max().item()
    torch.testing.assert_close(low.float(), exact, rtol=0.05, atol=0.05 * scale)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("version", ["v0", "v1", "max", "gauss"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_bf16_autocast_forward_and_backward_are_close_to_float32(ndim, version, impl):
    torch.manual_seed(0)
    layer = LAYERS[ndim](4, 4, 5, padding=2, dilated_kernel_size=5, groups=2, version=version, impl=impl)
    with torch.no_grad():
        layer.P.add_(0.3)  # off the grid
    x = torch.randn(2, 4, *([7] * ndim))
    expected, expected_grads = _forward_backward(layer, x)
    out, grads = _forward_backward(layer, x, torch.bfloat16)
    assert out.dtype == torch.bfloat16  # the convolution runs in bf16, not a float32 fallback
    _assert_close_in_bf16(out, expected)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name  # float32 parameters keep float32 gradients
        _assert_close_in_bf16(grad, expected_grads[name])


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_modules(dtype, impl):
    torch.manual_seed(0)
    layer = Dcls2d(2, 2, 4, padding=2, dilated_kernel_size=5, groups=2, impl=impl)
    x = torch.randn(1, 2, 6, 6)
    expected, expected_grads = _forward_backward(layer, x)
    out, grads = _forward_backward(layer.to(dtype), x.to(dtype))  # no grid is cached: the module follows .to(dtype)
    assert out.dtype == dtype and all(grad.dtype == dtype for grad in grads.values())
    _assert_close_in_bf16(out, expected)
    for name, grad in grads.items():
        _assert_close_in_bf16(grad, expected_grads[name])


def test_options_and_extent():
    layer = Dcls2d(2, 4, 3, dilated_kernel_size=(9, 5), version="gauss", position_lr_factor=5.0, position_weight_decay=0.0)
    assert layer.parameter_options() == {"P": {"lr_factor": 5.0, "weight_decay": 0.0}, "SIG": {"lr_factor": 5.0, "weight_decay": 0.0}}
    assert Dcls2d(2, 4, 3, dilated_kernel_size=5, version="v1").parameter_options() == {}
    with torch.no_grad():
        layer.P.zero_()
        layer.P[1, :, :, 0] = -2.0  # y of the first element
    extent = layer.learned_extent()
    assert set(extent) == {"spread_x", "spread_y"}
    assert extent["spread_x"].shape == (8,) and (extent["spread_x"] == 1).all()
    assert (extent["spread_y"] == 3).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(version="v3"), "version='v3'"),
        (dict(kernel_count=30), "kernel_count=30"),
        (dict(dilated_kernel_size=(3, 3, 3)), "dilated_kernel_size"),
        (dict(padding_mode="mirror"), "padding_mode='mirror'"),
        (dict(groups=3), "groups=3"),
    ],
)
def test_errors_name_the_bad_value(kwargs, match):
    options = dict(in_channels=4, out_channels=4, kernel_count=9, dilated_kernel_size=5) | kwargs
    with pytest.raises(ValueError, match=match):
        Dcls2d(**options)


def test_learns_the_positions_of_a_sparse_target_kernel():
    # target: a depthwise 1-D kernel with two taps at known offsets; a DCLS layer with two
    # elements started near the centre must move them there (v1, positions and weights learned)
    torch.manual_seed(0)
    size = 11
    target = torch.zeros(1, 1, size)
    target[0, 0, 5 + 3], target[0, 0, 5 - 2] = 1.0, -0.5
    layer = Dcls1d(1, 1, 2, padding=size // 2, dilated_kernel_size=size, bias=False, version="gauss")
    with torch.no_grad():
        layer.P.copy_(torch.tensor([[[[1.0, -0.5]]]]))
        layer.weight.copy_(torch.tensor([[[0.5, -0.5]]]))
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.1)
    x = torch.randn(4, 1, 48)
    y = F.conv1d(x, target, padding=size // 2)
    for _ in range(150):
        optimiser.zero_grad()
        loss = F.mse_loss(layer(x), y)
        loss.backward()
        optimiser.step()
        layer.clamp_parameters()
    positions = sorted(layer.P.detach().flatten().tolist())
    assert positions == pytest.approx([-2.0, 3.0], abs=0.15), positions
    assert loss.item() < 1e-3


def test_repulsion_is_zero_for_elements_at_least_one_pixel_apart():
    P = torch.tensor([[0.0, 1.0, -3.0], [0.0, 0.0, 2.5]]).reshape(2, 1, 1, 3)  # pairwise distances 1, 4.3, 4.7
    assert repulsion(P).item() == 0.0
    assert repulsion(torch.zeros(2, 4, 1, 1)).item() == 0.0  # K = 1: no pairs
    layer = Dcls2d(2, 2, 3, dilated_kernel_size=5, groups=2)
    assert layer.auxiliary_loss() is None  # off by default


def test_repulsion_of_close_elements_is_positive_and_pushes_them_apart():
    # two filters: coincident elements (the largest term, 1) and elements 0.25 apart along x
    P = torch.tensor([[[0.5, 0.5], [1.0, 1.25]], [[-1.0, -1.0], [2.0, 2.0]]], dtype=torch.float64).reshape(2, 2, 1, 2)
    P.requires_grad_()
    value = repulsion(P)
    assert value.item() == pytest.approx((1.0 + 0.75) / 2)
    value.backward()
    assert torch.isfinite(P.grad).all()
    grad_x = P.grad[0, 1, 0]
    assert grad_x[0] > 0 > grad_x[1]  # descent moves the left element left and the right one right
    assert P.grad[1].abs().sum() == 0  # nothing pulls along y, where they agree


def test_repulsion_gradcheck():
    generator = torch.Generator().manual_seed(0)
    P = (0.8 * torch.randn(3, 2, 2, 5, generator=generator, dtype=torch.float64)).requires_grad_()
    assert 0 < repulsion(P).item()
    torch.autograd.gradcheck(repulsion, (P,))


def test_layer_adds_its_weighted_repulsion_as_an_auxiliary_loss():
    layer = Dcls1d(2, 2, 4, dilated_kernel_size=7, groups=2, version="v1", repulsion_factor=0.5)
    with torch.no_grad():
        layer.P.copy_(torch.tensor([0.0, 0.5, 2.0, 2.0]).expand_as(layer.P))
    torch.testing.assert_close(layer.auxiliary_loss(), 0.5 * repulsion(layer.P))
    torch.testing.assert_close(layer.auxiliary_loss(), torch.tensor(0.5 * (0.5 + 1.0) / 6))
    with pytest.raises(ValueError, match="repulsion_factor=-1"):
        Dcls1d(2, 2, 4, dilated_kernel_size=7, repulsion_factor=-1)
