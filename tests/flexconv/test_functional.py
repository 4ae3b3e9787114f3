"""The convolution of generated kernels: hand-computed cases, FFT = spatial, causality, gradients."""

from __future__ import annotations

import math
import re

import pytest
import torch

from layers.flexconv.functional import FFT_THRESHOLDS, continuous_conv, fft_conv, fft_threshold_for, spatial_conv, use_fft


def test_causal_conv_by_hand():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    kernel = torch.tensor([[[10.0, 1.0]]])  # the last tap multiplies the current sample
    expected = torch.tensor([[[1.0, 12.0, 23.0, 34.0]]])
    for conv in (spatial_conv, fft_conv):
        assert torch.allclose(conv(x, kernel, causal=True), expected, atol=1e-5)


def test_same_conv_by_hand():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    kernel = torch.arange(9.0).view(1, 1, 3, 3)
    # cross-correlation of an impulse gives the kernel flipped
    expected = kernel.flip(-1, -2)
    for conv in (spatial_conv, fft_conv):
        assert torch.allclose(conv(x, kernel, torch.tensor([0.5])), expected + 0.5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("length, size", [(50, 7), (40, 40), (16, 31), (9, 1)])
def test_fft_equals_spatial_1d_causal(length, size, stride):
    torch.manual_seed(0)
    x = torch.randn(3, 4, length, dtype=torch.float64)
    kernel = torch.randn(5, 4, size, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    spatial = spatial_conv(x, kernel, bias, causal=True, stride=stride)
    assert spatial.shape == (3, 5, -(-length // stride))
    assert torch.allclose(fft_conv(x, kernel, bias, causal=True, stride=stride), spatial, atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape, size", [((12, 12), (5, 5)), ((8, 10), (3, 9)), ((6, 6), (13, 13)), ((7, 5), (1, 1))])
def test_fft_equals_spatial_2d_same(shape, size, stride):
    torch.manual_seed(1)
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    kernel = torch.randn(4, 3, *size, dtype=torch.float64)
    spatial = spatial_conv(x, kernel, stride=stride)
    assert spatial.shape[2:] == tuple(-(-s // stride) for s in shape)
    assert torch.allclose(fft_conv(x, kernel, stride=stride), spatial, atol=1e-10)


def test_fft_in_float32_is_close():
    torch.manual_seed(2)
    x, kernel = torch.randn(2, 8, 33, 33), torch.randn(8, 8, 33, 33) / 33
    assert torch.allclose(fft_conv(x, kernel), spatial_conv(x, kernel), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("conv", [spatial_conv, fft_conv])
def test_causal_output_never_depends_on_future_samples(conv):
    torch.manual_seed(3)
    x = torch.randn(1, 2, 30, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(3, 2, 30, dtype=torch.float64)
    out = conv(x, kernel, causal=True)
    for t in (0, 7, 28):
        (grad,) = torch.autograd.grad(out[0, :, t].sum(), x, retain_graph=True)
        # FFT round-off is ~1e-16; a dependence on the future would be of order 1
        assert grad[0, :, t + 1 :].abs().max() <= 1e-12
        assert grad[0, :, : t + 1].abs().max() > 1e-3


def test_fft_conv_gradcheck():
    torch.manual_seed(4)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(3, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k, b: fft_conv(a, k, b), (x, kernel, bias))
    x1 = torch.randn(2, 2, 9, dtype=torch.float64, requires_grad=True)
    k1 = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: fft_conv(a, k, causal=True, stride=2), (x1, k1))


def test_auto_picks_the_fft_from_the_threshold():
    assert not use_fft((7, 9), "auto", 64) and use_fft((9, 9), "auto", 64) and use_fft((64,), "auto", 64)
    assert use_fft((3,), "fft", 64) and not use_fft((999,), "spatial", 64)
    with pytest.raises(ValueError, match="impl='cuda'"):
        use_fft((3,), "cuda", 50)


def test_the_threshold_is_set_per_rank():
    per_rank = {"1d": 31, "2d": 121}
    assert use_fft((31,), "auto", per_rank) and not use_fft((30,), "auto", per_rank)
    assert use_fft((11, 11), "auto", per_rank) and not use_fft((9, 13), "auto", per_rank)
    assert fft_threshold_for({"2d": 5}, 1) == FFT_THRESHOLDS[1]  # a rank left out keeps the measured default
    assert fft_threshold_for(None, 2) == FFT_THRESHOLDS[2] and fft_threshold_for(7, 2) == 7
    side = math.isqrt(FFT_THRESHOLDS[2])
    assert use_fft((side, side), "auto") and not use_fft((side - 2, side - 2), "auto")
    with pytest.raises(ValueError, match="fft_threshold keys must be 1d, 2d"):
        use_fft((3, 3), "auto", {"3d": 5})


def test_the_layer_takes_a_per_rank_threshold_from_a_config():
    from omegaconf import OmegaConf

    from layers.flexconv import CKConv1d, CKConv2d

    thresholds = OmegaConf.create({"1d": 1000, "2d": 9})
    one, two = CKConv1d(2, 2, 31, fft_threshold=thresholds), CKConv2d(2, 2, 3, fft_threshold=thresholds)
    assert one.fft_threshold == {"1d": 1000, "2d": 9} and type(one.fft_threshold) is dict
    assert not use_fft((31,), one.impl, one.fft_threshold) and use_fft((3, 3), two.impl, two.fft_threshold)
    with pytest.raises(ValueError, match="fft_threshold keys"):
        CKConv2d(2, 2, 3, fft_threshold={"2D": 9})


@pytest.mark.parametrize("causal, x_shape, k_shape", [(False, (4, 6, 20, 18), (5, 6, 13, 9)), (True, (4, 6, 100), (5, 6, 37))])
def test_fft_values_and_gradients_match_the_spatial_path_in_float32(causal, x_shape, k_shape):
    torch.manual_seed(5)
    x = torch.randn(*x_shape, requires_grad=True)
    kernel = (torch.randn(*k_shape) / math.prod(k_shape[2:]) ** 0.5).requires_grad_()
    bias = torch.randn(k_shape[0], requires_grad=True)
    grad_out = torch.randn(x_shape[0], k_shape[0], *x_shape[2:])
    results = []
    for conv in (spatial_conv, fft_conv):
        out = conv(x, kernel, bias, causal=causal)
        results.append((out, *torch.autograd.grad(out, (x, kernel, bias), grad_out)))
    for fft_value, spatial_value in zip(results[1], results[0]):
        assert torch.allclose(fft_value, spatial_value, atol=2e-4, rtol=1e-4)


def test_the_2d_spatial_path_runs_channels_last_on_cpu():
    torch.manual_seed(6)
    x, kernel = torch.randn(2, 4, 9, 9), torch.randn(3, 4, 5, 5)
    out = spatial_conv(x, kernel)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, torch.nn.functional.conv2d(x, kernel, padding=2), atol=1e-5)
    assert torch.allclose(fft_conv(x.contiguous(memory_format=torch.channels_last), kernel), out, atol=1e-4)


@pytest.mark.parametrize(
    "x, kernel, causal, message",
    [
        (torch.zeros(1, 2, 5), torch.zeros(1, 3, 3), True, "expects 3 input channels, input has 2"),
        (torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 4, 3), False, "needs odd sizes, got (4, 3)"),
        (torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), True, "causal convolution is 1-D only"),
        (torch.zeros(1, 1, 5, 5, 5), torch.zeros(1, 1, 3, 3, 3), False, "must both be 1-D"),
    ],
)
def test_bad_inputs_are_named(x, kernel, causal, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        continuous_conv(x, kernel, causal=causal)


@pytest.mark.parametrize("conv", ["flex", "ckconv"])
def test_the_configs_take_the_measured_thresholds(conv):
    from pathlib import Path

    from omegaconf import OmegaConf

    config = OmegaConf.load(Path(__file__).resolve().parents[2] / "cfg" / "conv" / f"{conv}.yaml")
    assert OmegaConf.to_container(config.fft_threshold) == {f"{rank}d": value for rank, value in FFT_THRESHOLDS.items()}
