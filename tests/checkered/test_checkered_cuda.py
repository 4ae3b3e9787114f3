"""Checkered layers on a GPU against the four-convolution reference on the CPU (run with `-m cuda`)."""

from __future__ import annotations

import pytest
import torch

from layers.checkered import CheckeredConv2d, CheckeredMaxPool2d, checkered_conv2d_reference, offset_groups

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("sampler", ["naive", "lattice", "complete"])
@pytest.mark.parametrize("depth", [1, 2])
def test_stride2_conv_on_cuda_matches_the_reference(sampler, depth):
    torch.manual_seed(0)
    layer = CheckeredConv2d(4, 6, 3, stride=2, padding=1, depth=depth, sampler=sampler).double()
    x = torch.randn(2, 4, 3 + depth, 11, 10, dtype=torch.float64)
    sampling = offset_groups(sampler, 4)
    expected = checkered_conv2d_reference(x, layer.weight, layer.bias, stride=2, padding=layer.padding, sampling=sampling)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [layer.weight, layer.bias], grad)
    layer = layer.cuda()
    out = layer(x.cuda())
    torch.testing.assert_close(out.cpu(), expected)
    for mine, theirs in zip(torch.autograd.grad(out, [layer.weight, layer.bias], grad.cuda()), expected_grads):
        torch.testing.assert_close(mine.cpu(), theirs)


def test_pool_and_autocast_on_cuda():
    x = torch.randn(2, 8, 2, 16, 16, device="cuda")
    torch.testing.assert_close(CheckeredMaxPool2d(3, stride=2, padding=1)(x).cpu(), CheckeredMaxPool2d(3, stride=2, padding=1)(x.cpu()))
    layer = CheckeredConv2d(8, 8, 3, stride=2, padding=1).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 8, 4, 8, 8)
    out.float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32
