"""Kernel networks: interface, the published initialisations, and the anti-aliasing penalty."""

from __future__ import annotations

import math
import re

import pytest
import torch

from layers.flexconv import MLP, SIREN, FourierNet, GaborNet, MAGNet
from layers.flexconv.regularizer import anti_aliasing_penalty, mask_frequency, nyquist_frequency

NETS = [MAGNet, GaborNet, FourierNet, SIREN, MLP]


@pytest.mark.parametrize("net_type", NETS)
@pytest.mark.parametrize("dim", [1, 2])
def test_positions_to_channels_first_kernels(net_type, dim):
    torch.manual_seed(0)
    net = net_type(dim, 12, hidden_channels=8, num_layers=3)
    out = net(torch.rand(17, dim) * 2 - 1)
    assert out.shape == (12, 17) and out.is_contiguous() and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=rf"positions of shape \(17, {dim + 1}\) must be \(P, {dim}\)"):
        net(torch.zeros(17, dim + 1))


def test_magnet_initialisation_follows_the_paper():
    torch.manual_seed(0)
    hidden, layers, scale = 256, 3, 25.6
    net = MAGNet(2, 4, init_extent=0.125, hidden_channels=hidden, num_layers=layers, input_scale=scale)
    assert len(net.filters) == layers + 1 and len(net.hidden) == layers
    for index, filter_ in enumerate(net.filters):
        alpha = 6.0 / (index + 1)
        assert filter_.gamma.shape == (hidden, 2)  # anisotropic
        assert filter_.gamma.mean().item() == pytest.approx(alpha, rel=0.1)  # Gamma(alpha, 1) has mean alpha
        assert filter_.mu.abs().max() <= 0.125
        # default init U(-1/sqrt(2), 1/sqrt(2)) times input_scale / sqrt(L + 1) times gamma
        bound = scale / math.sqrt(layers + 1) * filter_.gamma / math.sqrt(2)
        assert torch.all(filter_.linear.weight.abs() <= bound + 1e-5)
        assert filter_.linear.bias.abs().max() <= math.pi
    for linear in net.hidden:
        assert linear.weight.abs().max() <= math.sqrt(1 / hidden)


def test_gabor_net_is_isotropic_with_one_gamma_distribution():
    torch.manual_seed(0)
    net = GaborNet(2, 4, hidden_channels=512, num_layers=3)
    for filter_ in net.filters:
        assert filter_.gamma.shape == (512, 1)
        assert filter_.gamma.mean().item() == pytest.approx(6.0 / 4, rel=0.1)


def test_gabor_filter_by_hand():
    net = MAGNet(1, 1, hidden_channels=1, num_layers=1)
    filter_ = net.filters[0]
    with torch.no_grad():
        filter_.gamma.fill_(2.0)
        filter_.mu.fill_(0.5)
        filter_.linear.weight.fill_(3.0)
        filter_.linear.bias.fill_(0.25)
    x = torch.tensor([[0.1]])
    expected = math.exp(-0.5 * (2.0 * (0.1 - 0.5)) ** 2) * math.sin(3.0 * 0.1 + 0.25)
    assert filter_(x).item() == pytest.approx(expected, rel=1e-6)
    assert filter_.max_frequency(2.0).item() == pytest.approx((3.0 + 2.0 * 2.0) / (2 * math.pi))


def test_siren_initialisation():
    torch.manual_seed(0)
    net = SIREN(2, 6, hidden_channels=64, num_layers=3, omega_0=30.0)
    assert net.hidden[0].weight.abs().max() <= 0.5  # U(-1/D, 1/D)
    for linear in [net.hidden[1], net.output]:
        assert linear.weight.abs().max() <= math.sqrt(6 / 64) / 30
    assert "omega_0" in dict(net.named_buffers())
    learned = SIREN(1, 2, omega_0=5.0, learn_omega_0=True)
    assert "omega_0" in dict(learned.named_parameters())


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SIREN(1, 4, omega_0=0.0), "omega_0=0.0 must be > 0"),
        (lambda: SIREN(1, 4, num_layers=1), "num_layers=1 must be >= 2"),
        (lambda: MLP(1, 4, norm="group"), "norm='group' must be one of batch, layer, none"),
        (lambda: MAGNet(2, 4, num_layers=0), "num_layers=0 must be >= 1"),
        (lambda: MAGNet(2, 4, alpha=-1.0), "alpha=-1.0"),
        (lambda: FourierNet(2, 0), "out_channels=0"),
    ],
)
def test_bad_kernel_net_options_are_named(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_nyquist_frequency():
    # 33 samples over [-1, 1]: 16 samples per unit, so at most 8 cycles per unit
    assert nyquist_frequency(33) == 8.0


def test_penalty_is_zero_below_nyquist_and_positive_above():
    torch.manual_seed(0)
    net = MAGNet(2, 4, hidden_channels=16, num_layers=3, input_scale=25.6)
    with torch.no_grad():
        for filter_ in net.filters:
            filter_.linear.weight.mul_(1e-3)
            filter_.gamma.mul_(1e-3)
    low = net.filter_frequencies(2.0)
    assert torch.all(low < nyquist_frequency(33) / 4)
    assert anti_aliasing_penalty(low, 33).item() == 0.0
    with torch.no_grad():
        net.filters[2].linear.weight.fill_(2 * math.pi * 5.0)  # 5 cycles per unit > 8 / 4
    high = net.filter_frequencies(2.0)
    penalty = anti_aliasing_penalty(high, 33)
    assert penalty.item() == pytest.approx((high[2].item() - 2.0) ** 2)
    # the same kernel sampled finely enough does not alias
    assert anti_aliasing_penalty(high, 129).item() == 0.0


def test_mask_adds_its_bandwidth_spread_over_the_filters():
    frequencies = torch.full((4,), 1.0)
    sigma = torch.tensor([0.1, 0.05])
    extra = mask_frequency(sigma, 2.0)
    assert extra.item() == pytest.approx(2.0 / (2 * math.pi * 0.05))
    expected = 4 * max(1.0 + extra.item() / 4 - 8.0 / 4, 0.0) ** 2
    assert anti_aliasing_penalty(frequencies, 33, extra).item() == pytest.approx(expected)


def test_penalty_has_gradients_for_the_frequencies():
    net = MAGNet(1, 2, hidden_channels=4, num_layers=1, input_scale=500.0)
    penalty = anti_aliasing_penalty(net.filter_frequencies(2.0), 9)
    penalty.backward()
    assert penalty.item() > 0
    assert any(filter_.linear.weight.grad.abs().sum() > 0 for filter_ in net.filters)


@pytest.mark.parametrize("net_type", NETS)
def test_scale_folded_into_the_projection_equals_scaling_the_kernel(net_type):
    torch.manual_seed(1)
    net = net_type(2, 6, hidden_channels=8).double()
    positions = torch.rand(11, 2, dtype=torch.float64) * 2 - 1
    scale = torch.rand(11, dtype=torch.float64)
    assert torch.allclose(net(positions, scale), net(positions) * scale, atol=1e-12)
