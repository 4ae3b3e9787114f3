"""CKConv and FlexConv modules: dense-kernel equivalence, cropping, causality, gradients,
optimiser options, the regulariser hook, cross-resolution resampling and errors."""

from __future__ import annotations

import math
import re
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from layers.flexconv import (
    SIREN,
    CKConv1d,
    CKConv2d,
    FlexConv1d,
    FlexConv2d,
    GaborNet,
    MAGNet,
    resample_kernels,
    spatial_conv,
)
from layers.flexconv.mask import crop_window

SMALL_MAGNET = partial(MAGNet, hidden_channels=8, num_layers=2)


def test_ckconv2d_is_a_convolution_with_its_generated_kernel():
    torch.manual_seed(0)
    layer = CKConv2d(3, 4, 7, kernel_net=SMALL_MAGNET)
    x = torch.randn(2, 3, 10, 10)
    kernel = layer.generate_kernel((10, 10))
    assert kernel.shape == (4, 3, 7, 7)
    assert torch.allclose(layer(x), spatial_conv(x, kernel, layer.bias), atol=1e-6)
    # the kernel network's output channel o * C_in + i is kernel (o, i)
    positions = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 7), torch.linspace(-1, 1, 7), indexing="ij"), -1).reshape(-1, 2)
    assert torch.allclose(kernel[2, 1].flatten(), layer.kernel_net(positions)[2 * 3 + 1], atol=1e-6)


@pytest.mark.parametrize("layer_type, shape", [(CKConv1d, (2, 3, 60)), (FlexConv1d, (2, 3, 60)), (CKConv2d, (2, 3, 12, 12)), (FlexConv2d, (2, 3, 12, 12))])
def test_fft_and_spatial_paths_agree(layer_type, shape):
    torch.manual_seed(1)
    layer = layer_type(3, 4, kernel_net=SMALL_MAGNET, impl="spatial").double()
    if isinstance(layer, (FlexConv1d, FlexConv2d)):
        with torch.no_grad():
            layer.mask_sigma.fill_(0.4)
    x = torch.randn(*shape, dtype=torch.float64)
    spatial = layer(x)
    layer.impl = "fft"
    assert torch.allclose(layer(x), spatial, atol=1e-10)
    layer.impl, layer.fft_threshold = "auto", 1
    assert torch.allclose(layer(x), spatial, atol=1e-10)


@pytest.mark.parametrize("layer_type", [CKConv1d, FlexConv1d])
def test_1d_layers_are_causal(layer_type):
    torch.manual_seed(2)
    layer = layer_type(2, 3, "full", kernel_net=SMALL_MAGNET).double()
    x = torch.randn(1, 2, 25, dtype=torch.float64)
    out = layer(x)
    changed = x.clone()
    changed[..., 13:] = torch.randn(1, 2, 12, dtype=torch.float64)
    assert torch.equal(layer(changed)[..., :13], out[..., :13])
    assert not torch.allclose(layer(changed)[..., 13:], out[..., 13:])


def test_flexconv_mask_starts_at_the_newest_step_in_1d_and_the_centre_in_2d():
    assert FlexConv1d(1, 1).mask_mean.tolist() == [1.0]
    assert FlexConv2d(1, 1).mask_mean.tolist() == [0.0, 0.0]
    assert FlexConv2d(1, 1).mask_sigma.tolist() == pytest.approx([0.075, 0.075])
    # the kernel network starts a bit wider than the mask
    magnet = FlexConv2d(1, 1, kernel_net=partial(MAGNet, hidden_channels=64)).kernel_net
    assert all(filter_.mu.abs().max() <= 1.667 * 0.075 for filter_ in magnet.filters)


@pytest.mark.parametrize("layer_type, shape", [(FlexConv1d, (2, 2, 40)), (FlexConv2d, (2, 2, 21, 21))])
def test_cropping_equals_the_full_kernel_zeroed_outside_the_window(layer_type, shape):
    torch.manual_seed(3)
    layer = layer_type(2, 3, kernel_net=SMALL_MAGNET).double()
    with torch.no_grad():
        layer.mask_sigma.fill_(0.2)
        layer.mask_mean.add_(-0.1)
    x = torch.randn(*shape, dtype=torch.float64)
    cropped = layer(x)
    size = layer.grid_size
    windows = [crop_window(n, m, s, 0.1, layer.causal) for n, m, s in zip(size, layer.mask_mean.tolist(), layer.mask_sigma.tolist())]
    assert layer.kernel_size == tuple(stop - start for start, stop in windows) and layer.kernel_size != size
    layer.mask_dynamic_cropping = False
    full_kernel = layer.generate_kernel(shape[2:])
    assert full_kernel.shape[2:] == size
    outside = torch.ones_like(full_kernel, dtype=torch.bool)
    outside[(..., *(slice(start, stop) for start, stop in windows))] = False
    zeroed = full_kernel.masked_fill(outside, 0.0)
    assert torch.allclose(cropped, spatial_conv(x, zeroed, layer.bias, causal=layer.causal), atol=1e-12)
    # what cropping drops is small: the mask is below its threshold there
    uncropped = layer(x)
    assert (cropped - uncropped).abs().max() < 0.2 * uncropped.abs().max()


@pytest.mark.parametrize("layer_type, shape", [(FlexConv1d, (2, 2, 15)), (FlexConv2d, (1, 2, 7, 7))])
@pytest.mark.parametrize("cropping", [True, False])
def test_gradcheck_of_mask_and_kernel_network_parameters(layer_type, shape, cropping):
    torch.manual_seed(4)
    layer = layer_type(2, 2, kernel_net=partial(MAGNet, hidden_channels=4, num_layers=1), mask_dynamic_cropping=cropping).double()
    with torch.no_grad():  # a crop boundary well between two samples, so the finite differences keep the window
        layer.mask_sigma.fill_(0.23)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    names = ["mask_mean", "mask_sigma", "kernel_net.filters.0.gamma", "kernel_net.filters.1.mu", "kernel_net.hidden.0.weight", "kernel_net.output.bias", "bias"]
    params = dict(layer.named_parameters())
    inputs = tuple(params[name].detach().clone().requires_grad_() for name in names)

    def forward(x, *values):
        return functional_call(layer, {**params, **dict(zip(names, values))}, (x,))

    assert torch.autograd.gradcheck(forward, (x, *inputs))


def test_gradcheck_of_siren_and_ckconv():
    torch.manual_seed(5)
    layer = CKConv1d(1, 2, kernel_net=partial(SIREN, hidden_channels=4, omega_0=3.0, learn_omega_0=True)).double()
    x = torch.randn(1, 1, 9, dtype=torch.float64)
    names = ["kernel_net.omega_0", "kernel_net.hidden.0.weight", "kernel_net.output.weight"]
    params = dict(layer.named_parameters())
    inputs = tuple(params[name].detach().clone().requires_grad_() for name in names)
    assert torch.autograd.gradcheck(lambda *values: functional_call(layer, {**params, **dict(zip(names, values))}, (x,)), inputs)


def test_mask_parameters_get_their_learning_rate_factor():
    from engine.tasks import ClassificationTask
    from models.flexnet import FlexTCN
    from layers.flexconv import flex_conv

    net = FlexTCN(1, 10, [40], num_blocks=1, conv=partial(flex_conv, kernel_net=SMALL_MAGNET, mask_lr_factor=0.1))
    task = ClassificationTask(num_classes=10, net=net, optimizer=partial(torch.optim.Adam, lr=1e-2, weight_decay=1e-4))
    optimizer = task.configure_optimizers()
    masks = {id(p) for name, p in net.named_parameters() if name.endswith(("mask_mean", "mask_sigma"))}
    assert len(masks) == 4  # two FlexConvs, mean and sigma each
    for group in optimizer.param_groups:
        is_mask = {id(p) for p in group["params"]} <= masks
        assert group["lr"] == pytest.approx(1e-3 if is_mask else 1e-2)
        assert group["weight_decay"] == (0.0 if is_mask else 1e-4)


def test_regulariser_reaches_the_training_loss():
    from engine.tasks import ClassificationTask
    from models.flexnet import FlexNet
    from layers.flexconv import flex_conv

    torch.manual_seed(6)
    conv = partial(flex_conv, kernel_net=SMALL_MAGNET, regularize_target="gabor+mask", regularize_factor=0.5, regularize_init="paper")
    net = FlexNet(1, 10, [9, 9], hidden_channels=4, num_blocks=1, block_width_factors=[], conv=conv)
    task = ClassificationTask(num_classes=10, net=net, optimizer=partial(torch.optim.Adam, lr=1e-3))
    assert task.auxiliary_loss() is None  # before the first forward the grid is unknown
    net(torch.zeros(1, 1, 9, 9))
    layers = [m for m in net.modules() if isinstance(m, FlexConv2d)]
    terms = [layer.auxiliary_loss() for layer in layers]
    assert all(term.item() > 0 for term in terms)  # input_scale 25.6 on a 9-sample grid aliases
    assert task.auxiliary_loss().item() == pytest.approx(sum(term.item() for term in terms))
    layer = layers[0]
    without_mask = layer.regularize_target
    layer.regularize_target = "gabor"
    assert layer.auxiliary_loss().item() < terms[0].item()
    layer.regularize_target = without_mask
    plain = FlexNet(1, 10, [9, 9], hidden_channels=4, num_blocks=1, block_width_factors=[], conv=partial(flex_conv, kernel_net=SMALL_MAGNET))
    plain(torch.zeros(1, 1, 9, 9))
    assert ClassificationTask(num_classes=10, net=plain, optimizer=torch.optim.Adam).auxiliary_loss() is None


def _smooth_images(count: int, resolution: int, seed: int) -> torch.Tensor:
    """`(count, 1, R, R)` sums of low-frequency cosines sampled at pixel centres: the same
    continuous images at every resolution."""
    coefficients = torch.randn(count, 3, 3, generator=torch.Generator().manual_seed(seed))
    centres = (torch.arange(resolution) + 0.5) / resolution
    waves = torch.stack([torch.cos(2 * math.pi * k * centres) for k in range(3)])
    return torch.einsum("nab,ai,bj->nij", coefficients, waves, waves).unsqueeze(1)


def test_a_layer_trained_at_16_keeps_its_response_at_32():
    torch.manual_seed(7)
    layer = FlexConv2d(1, 1, kernel_net=partial(MAGNet, hidden_channels=16, input_scale=4.0), mask_init_sigma=0.3)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for step in range(40):
        x = _smooth_images(16, 16, step)
        loss = F.mse_loss(layer(x), F.avg_pool2d(x, 5, 1, 2, count_include_pad=False))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x16, x32 = _smooth_images(4, 16, 999), _smooth_images(4, 32, 999)
    with torch.no_grad():
        source = layer(x16)
        unnormalised = F.avg_pool2d(layer(x32), 2)
        assert resample_kernels(layer, 16, 32) == 1
        assert layer.sampling_rate_norm.item() == pytest.approx(0.25)
        target = F.avg_pool2d(layer(x32), 2)
    assert layer.grid_size == (33, 33)
    relative = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert relative(target, source) < 0.05
    assert relative(unnormalised, source) > 1.0


def test_resampling_scales_a_fixed_horizon():
    layer = CKConv2d(1, 1, 17, kernel_net=SMALL_MAGNET)
    resample_kernels(layer, 16, 32)
    assert layer.horizon == 33 and layer.grid_size == (33, 33)
    with pytest.raises(ValueError, match="horizon=33 at 48 has no odd equivalent at 32"):
        resample_kernels(layer, 48, 32)
    assert "sampling_rate_norm" in layer.state_dict()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FlexConv2d(1, 1, mask_threshold=1.0), "mask threshold=1.0 must be in (0, 1)"),
        (lambda: FlexConv2d(1, 1, mask_threshold=0.0), "mask threshold=0.0 must be in (0, 1)"),
        (lambda: FlexConv2d(1, 1, 32), "horizon=32 must be 'same', 'full' or an odd kernel size"),
        (lambda: CKConv2d(1, 1, regularize_target="gabor+mask"), "regularize target='gabor+mask' must be null or one of gabor"),
        (lambda: FlexConv1d(1, 1, kernel_net=SIREN, regularize_target="gabor"), "needs a Gabor kernel network (kernel=magnet or gabor), got SIREN"),
        (lambda: CKConv1d(1, 1, impl="cuda"), "impl='cuda' must be one of auto, spatial, fft"),
        (lambda: FlexConv2d(1, 1, mask_init_sigma=0.0), "mask init sigma=0.0"),
    ],
)
def test_bad_options_are_named(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_gabor_kernels_can_be_regularised():
    layer = FlexConv2d(1, 1, 9, kernel_net=GaborNet, regularize_target="gabor")
    assert layer.auxiliary_loss().item() >= 0


def test_wrong_input_shape_is_named():
    with pytest.raises(ValueError, match=re.escape("input of shape (2, 3, 8) must be (B, C, H, W) with C=3")):
        FlexConv2d(3, 4)(torch.zeros(2, 3, 8))


@pytest.mark.slow  # torch.compile tracing
@pytest.mark.parametrize("layer_type, shape", [(FlexConv1d, (2, 2, 30)), (FlexConv2d, (2, 2, 15, 15))])
@pytest.mark.parametrize("finer", [1, 2])  # 2: re-sampled for a 2x finer grid (crop quantised on the trained one)
@pytest.mark.parametrize("crop", ["cover", "inside"])
def test_compiled_flexconv_zeroes_instead_of_cropping(layer_type, shape, finer, crop):
    torch.manual_seed(8)
    layer = layer_type(2, 3, kernel_net=SMALL_MAGNET, mask_crop=crop)
    with torch.no_grad():
        layer.mask_sigma.fill_(0.21)
    if finer > 1:
        resample_kernels(layer, 1, finer)
        shape = (*shape[:2], *(finer * size - (layer_type is FlexConv2d) for size in shape[2:]))
    x = torch.randn(*shape)
    eager = layer(x)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")(x)
    assert layer.kernel_size == layer.grid_size  # the whole grid, zeroed outside the window
    assert torch.allclose(compiled, eager, atol=1e-5)
