"""Anti-aliasing: the two penalty forms and the band-limited initialisation (`regularize_init="nyquist"`)."""

from __future__ import annotations

import math

import pytest
import torch

from layers.flexconv import CKConv2d, FlexConv1d, FlexConv2d, MAGNet
from layers.flexconv.regularizer import MASK_BUDGET_SHARE, anti_aliasing_penalty, mask_frequency, nyquist_frequency


def test_hinge_form_counts_every_unit_and_max_form_only_the_highest():
    # 2 filters, 3 units, 1 dimension; Nyquist of 9 samples is 2, so each filter's share is 1
    frequencies = torch.tensor([[[0.5], [1.5], [3.0]], [[0.2], [0.4], [1.25]]])
    assert anti_aliasing_penalty(frequencies, 9, form="max").item() == pytest.approx(2.0**2 + 0.25**2)
    assert anti_aliasing_penalty(frequencies, 9, form="hinge").item() == pytest.approx(0.5**2 + 2.0**2 + 0.25**2)
    below = frequencies.clamp_max(1.0)
    assert anti_aliasing_penalty(below, 9, form="hinge").item() == anti_aliasing_penalty(below, 9, form="max").item() == 0.0
    with pytest.raises(ValueError, match="form='mean' must be one of hinge, max"):
        anti_aliasing_penalty(frequencies, 9, form="mean")


def test_hinge_gradient_reaches_every_offending_unit():
    torch.manual_seed(0)
    net = MAGNet(2, 4, hidden_channels=8, num_layers=1, input_scale=25.6)
    offending = int((net.unit_frequencies(2.0).amax(2) > nyquist_frequency(15) / 2).sum())
    anti_aliasing_penalty(net.unit_frequencies(2.0), 15, form="hinge").backward()
    hinge_rows = sum(int((f.linear.weight.grad.abs().sum(1) > 0).sum()) for f in net.filters)
    net.zero_grad()
    anti_aliasing_penalty(net.unit_frequencies(2.0), 15, form="max").backward()
    max_rows = sum(int((f.linear.weight.grad.abs().sum(1) > 0).sum()) for f in net.filters)
    assert max_rows == 2 and hinge_rows == offending > 12  # one unit per filter against (nearly) all 8 of both


@pytest.mark.parametrize("grid", [9, 15, 33])
def test_limit_bandwidth_brings_every_filter_within_its_share(grid):
    torch.manual_seed(0)
    net = MAGNet(2, 3, hidden_channels=16, num_layers=3, input_scale=25.6)
    budget = nyquist_frequency(grid)
    assert net.filter_frequencies(2.0).sum() > 5 * budget  # the published initialisation aliases
    net.limit_bandwidth(budget, 2.0)
    frequencies = net.filter_frequencies(2.0)
    assert frequencies.sum().item() <= budget * (1 + 1e-5)
    assert frequencies.max().item() == pytest.approx(budget / 4, rel=1e-5)
    assert anti_aliasing_penalty(net.unit_frequencies(2.0), grid).item() == pytest.approx(0.0, abs=1e-8)


def test_limit_bandwidth_never_raises_a_frequency():
    torch.manual_seed(0)
    net = MAGNet(1, 3, hidden_channels=8, num_layers=1, input_scale=0.1)
    before = net.filter_frequencies(2.0).clone()
    net.limit_bandwidth(100.0, 2.0)
    torch.testing.assert_close(net.filter_frequencies(2.0), before)


def test_flexconv_band_limits_itself_and_its_mask_at_the_first_training_forward():
    torch.manual_seed(0)
    layer = FlexConv2d(2, 3, regularize_target="gabor+mask")
    initial = {name: value.clone() for name, value in layer.state_dict().items()}
    layer.eval()
    layer(torch.zeros(1, 2, 14, 14))  # evaluation (e.g. a shape check) changes nothing
    assert all(torch.equal(initial[name], value) for name, value in layer.state_dict().items())
    layer.train()
    layer(torch.zeros(1, 2, 14, 14))  # the 15-sample grid: Nyquist 3.5 cycles per unit
    budget = nyquist_frequency(15)
    stddevs = layer.regularize_gauss_stddevs
    mask = mask_frequency(layer.mask_sigma, stddevs).item()
    assert mask == pytest.approx(MASK_BUDGET_SHARE * budget)  # sigma 0.075 alone would be 6.37 (3 stddevs)
    assert layer.kernel_net.filter_frequencies(stddevs).sum().item() + mask <= budget * (1 + 1e-5)
    assert layer.auxiliary_loss().item() == pytest.approx(0.0, abs=1e-8)
    assert bool(layer.band_limited)
    band_limited = {name: value.clone() for name, value in layer.state_dict().items()}
    layer(torch.zeros(1, 2, 6, 6))  # once only: a later, coarser input does not band-limit again
    assert all(torch.equal(band_limited[name], value) for name, value in layer.state_dict().items())


@pytest.mark.parametrize("options", [{"regularize_target": None}, {"regularize_target": "gabor", "regularize_init": "paper"}])
def test_no_band_limiting_without_regulariser_or_with_the_papers_initialisation(options):
    torch.manual_seed(0)
    layer = CKConv2d(1, 1, **options)
    before = layer.kernel_net.filter_frequencies(2.0).clone()
    layer(torch.zeros(1, 1, 8, 8))
    torch.testing.assert_close(layer.kernel_net.filter_frequencies(2.0), before)


def test_gabor_target_band_limits_the_kernel_net_and_leaves_the_mask():
    layer = FlexConv1d(1, 2, regularize_target="gabor")
    layer(torch.zeros(1, 1, 41))
    assert layer.mask_sigma.item() == pytest.approx(0.075)
    assert layer.kernel_net.filter_frequencies(2.0).sum().item() <= nyquist_frequency(41) * (1 + 1e-5)


def test_loaded_weights_are_never_band_limited_again():
    torch.manual_seed(0)
    source = FlexConv2d(1, 2, regularize_target="gabor+mask", regularize_init="paper")
    state = {name: value for name, value in source.state_dict().items() if name != "band_limited"}  # older checkpoint
    layer = FlexConv2d(1, 2, regularize_target="gabor+mask")
    layer.load_state_dict(state)
    layer(torch.zeros(1, 1, 14, 14))
    torch.testing.assert_close(layer.kernel_net.filter_frequencies(2.0), source.kernel_net.filter_frequencies(2.0))
    trained = FlexConv2d(1, 2, regularize_target="gabor+mask")
    trained(torch.zeros(1, 1, 14, 14))
    fresh = FlexConv2d(1, 2, regularize_target="gabor+mask")
    fresh.load_state_dict(trained.state_dict())  # a checkpoint of a band-limited layer
    assert bool(fresh.band_limited) and not fresh._band_limit_pending


def test_bad_form_and_init_are_named():
    with pytest.raises(ValueError, match="regularize form='l1' must be one of hinge, max and init='zero' one of nyquist, paper"):
        FlexConv2d(1, 1, regularize_target="gabor", regularize_form="l1", regularize_init="zero")
