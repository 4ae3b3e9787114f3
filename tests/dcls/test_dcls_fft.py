"""The FFT path of DCLS layers: the registered depthwise FFT convolution equals the direct one
(values, float64 gradcheck, op registration), the layers pick it where it is faster, and the
FLOP counter counts it as the direct convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.profiling import count_macs
from layers.dcls import Dcls1d, Dcls2d, Dcls3d
from layers.dcls.fft_conv import depthwise_fft_conv

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CASES = [(1, (6,), (2,)), (2, (5, 4), (2, 0)), (3, (3, 2, 3), (1, 1, 0))]  # odd, even and uneven kernels


@pytest.mark.parametrize("ndim, kernel_size, padding", CASES)
def test_fft_conv_equals_the_direct_depthwise_convolution(ndim, kernel_size, padding):
    generator = torch.Generator().manual_seed(ndim)
    x = torch.randn(1, 2, *([6] * ndim), generator=generator, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, 1, *kernel_size, generator=generator, dtype=torch.float64, requires_grad=True)
    expected = CONV[ndim](x, kernel, padding=padding, groups=2)
    torch.testing.assert_close(depthwise_fft_conv(x, kernel, padding), expected, rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda a, b: depthwise_fft_conv(a, b, padding), (x, kernel), fast_mode=True)


def test_fft_conv_in_blocks_equals_one_block(monkeypatch):
    """Blocks of channels, and of samples when one channel of the batch is over the bound, give
    the same values and gradients as one transform of the whole input."""
    from layers.dcls import fft_conv

    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 9, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(5, 1, 5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(x, kernel, padding=(2, 1), groups=5)
    plane = 13 * 10 * 8  # padded plane, float64
    for bound, blocks in ((2 * 3 * plane, 3), (2 * plane, 10)):  # two channels of the batch; two samples of one channel
        monkeypatch.setattr(fft_conv, "BLOCK_BYTES", bound)
        assert len(fft_conv._blocks(x, [13, 10])) == blocks
        torch.testing.assert_close(depthwise_fft_conv(x, kernel, (2, 1)), expected, rtol=1e-12, atol=1e-12)
        torch.autograd.gradcheck(lambda a, b: depthwise_fft_conv(a, b, (2, 1)), (x, kernel), fast_mode=True)


@pytest.mark.slow  # opcheck compiles the op several ways (about 10 s on this shared machine)
def test_fft_conv_is_a_well_formed_registered_op():
    x, kernel = torch.randn(2, 3, 9, 8), torch.randn(3, 1, 5, 3)
    torch.library.opcheck(torch.ops.farconv.dcls_depthwise_fft_conv, (x.requires_grad_(), kernel.requires_grad_(), [2, 1]))
    with pytest.raises(ValueError, match="must be \\(C, 1, \\*K\\)"):
        depthwise_fft_conv(x, torch.randn(3, 2, 5, 3), (2, 1))


@pytest.mark.parametrize("cls, ndim, size, length", [(Dcls1d, 1, 121, 784), (Dcls2d, 2, 13, 32), (Dcls3d, 3, 5, 16)])
def test_layers_pick_the_fft_for_large_depthwise_kernels_and_match_the_direct_path(cls, ndim, size, length):
    torch.manual_seed(0)
    layer = cls(4, 4, 6, padding=size // 2, dilated_kernel_size=size, groups=4, version="gauss")
    x = torch.randn(2, 4, *([length] * ndim))
    assert layer.uses_fft(x)  # depthwise, float32 on CPU, direct >= 4x the FFT's operations
    assert not layer.uses_fft(torch.randn(2, 4, *([3] * ndim)))  # a tiny map: the padding dominates the FFT
    out = layer(x)
    out.backward(torch.ones_like(out))
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer.conv_impl = "direct"
    expected = layer(x)
    expected.backward(torch.ones_like(expected))
    scale = expected.abs().max().item()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * scale)
    for grad, param in zip(grads, layer.parameters()):
        torch.testing.assert_close(grad, param.grad, rtol=1e-4, atol=1e-4 * param.grad.abs().max().item())


def test_auto_keeps_the_direct_convolution_where_the_fft_does_not_apply():
    x = torch.randn(1, 4, 20, 20)
    assert not Dcls2d(4, 4, 6, padding=3, dilated_kernel_size=7, groups=4).uses_fft(x)  # 49 taps: direct is faster
    assert not Dcls2d(768, 768, 34, padding=8, dilated_kernel_size=17, groups=768).uses_fft(torch.randn(1, 768, 7, 7))  # ConvNeXt-T stage 4
    assert Dcls2d(384, 384, 34, padding=8, dilated_kernel_size=17, groups=384).uses_fft(torch.randn(1, 384, 14, 14))  # stage 3
    assert not Dcls2d(4, 8, 6, padding=6, dilated_kernel_size=13, groups=4).uses_fft(x)  # not depthwise
    assert not Dcls2d(4, 4, 6, padding=6, dilated_kernel_size=13, groups=4, stride=2).uses_fft(x)
    large = Dcls2d(4, 4, 6, padding=6, dilated_kernel_size=13, groups=4)
    assert not large.uses_fft(x.half())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the convolution runs in bf16, directly
        assert not large.uses_fft(x)
    with pytest.raises(ValueError, match="conv_impl='fft' needs a depthwise layer"):
        Dcls2d(4, 8, 6, dilated_kernel_size=13, groups=4, conv_impl="fft")
    with pytest.raises(ValueError, match="conv_impl='winograd'"):
        Dcls2d(4, 4, 6, dilated_kernel_size=13, groups=4, conv_impl="winograd")


def test_flop_counter_counts_the_fft_path_as_the_direct_convolution():
    layer = Dcls2d(8, 8, 10, padding=6, dilated_kernel_size=13, groups=8, bias=False)
    x = torch.randn(1, 8, 16, 16)
    assert layer.uses_fft(x)
    fft_macs = count_macs(layer, x)
    layer.conv_impl = "direct"
    assert fft_macs == count_macs(layer, x) == 8 * 16 * 16 * 169 + 8 * 10 * 169  # convolution + construction
