"""Octave convolution on a GPU against the four-path reference on the CPU (run with `-m cuda`)."""

from __future__ import annotations

import pytest
import torch

from layers.octave import OctaveConv, octave_conv2d_reference

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("alphas", [(0.5, 0.5), (0.0, 0.25), (0.5, 0.0)])
def test_octave_conv_on_cuda_matches_the_reference(stride, alphas):
    torch.manual_seed(0)
    conv = OctaveConv(8, 12, 3, *alphas, stride=stride, padding=1, bias=True).double()
    high, low = conv.channels_in
    x_h = torch.randn(2, high, 14, 10, dtype=torch.float64)
    x_l = torch.randn(2, low, 7, 5, dtype=torch.float64) if low else None
    expected = octave_conv2d_reference(x_h, x_l, conv.weights(), conv.bias_h, conv.bias_l, stride, 1, 1)
    conv = conv.cuda()
    out = conv((x_h.cuda(), None if x_l is None else x_l.cuda()))
    for mine, theirs in zip(out, expected):
        assert (mine is None) == (theirs is None)
        if theirs is not None:
            torch.testing.assert_close(mine.cpu(), theirs)
    sum(part.sum() for part in out if part is not None).backward()
    assert all(p.grad is not None for p in conv.parameters())


def test_octave_conv_under_autocast_on_cuda():
    conv = OctaveConv(16, 16, 3, 0.5, 0.5, padding=1).cuda()
    x = (torch.randn(2, 8, 16, 16, device="cuda"), torch.randn(2, 8, 8, 8, device="cuda"))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_h, y_l = conv(x)
    assert y_h.dtype == y_l.dtype == torch.bfloat16
    (y_h.float().sum() + y_l.float().sum()).backward()
    assert conv.weight_hh.grad.dtype == torch.float32
