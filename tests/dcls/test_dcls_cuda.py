"""DCLS on a GPU: the fused construction matches the reference, modules follow `.to(device)`
(no grid is cached on another device), and autocast works. Needs CUDA (marked `cuda`)."""

from __future__ import annotations

import pytest
import torch

from layers.dcls import Dcls2d, construct_kernel
from layers.dcls.reference import VERSIONS

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("version", VERSIONS)
def test_fused_on_cuda_matches_reference_on_cpu(version):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 2, 6, generator=generator, dtype=torch.float64)
    P = 3 * torch.rand(2, 8, 2, 6, generator=generator, dtype=torch.float64) - 1.5
    SIG = torch.rand(2, 8, 2, 6, generator=generator, dtype=torch.float64) + 0.1 if version in ("max", "gauss") else None
    leaves = [t.requires_grad_() for t in (weight, P, SIG) if t is not None]
    on_gpu = [t.detach().cuda().requires_grad_() for t in leaves]
    cpu = construct_kernel(*leaves, *([None] if SIG is None else []), (9, 5), version, "reference")
    gpu = construct_kernel(*on_gpu, *([None] if SIG is None else []), (9, 5), version, "fused")
    torch.testing.assert_close(gpu.cpu(), cpu)
    grad = torch.randn_like(cpu)
    for a, b in zip(torch.autograd.grad(cpu, leaves, grad), torch.autograd.grad(gpu, on_gpu, grad.cuda())):
        torch.testing.assert_close(b.cpu(), a)


def test_module_follows_the_device_and_autocast():
    layer = Dcls2d(4, 4, 9, padding=3, dilated_kernel_size=7, groups=4)
    x = torch.randn(2, 4, 16, 16)
    expected = layer(x)
    layer = layer.cuda()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 (the GPU default) moves float32 by ~1e-3
        torch.testing.assert_close(layer(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        out = layer(x.cuda())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float().cpu(), expected, rtol=2e-2, atol=2e-2)


def test_fft_convolution_on_cuda_matches_the_direct_one():
    """`conv_impl="fft"` runs on any device: values and gradients against cuDNN's direct convolution, float64."""
    generator = torch.Generator().manual_seed(3)
    layer = Dcls2d(6, 6, 8, padding=6, dilated_kernel_size=13, groups=6, version="gauss", conv_impl="fft").double().cuda()
    x = torch.randn(2, 6, 20, 17, generator=generator, dtype=torch.float64).cuda().requires_grad_()
    out = layer(x)
    out.backward(torch.ones_like(out))
    grads = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]
    layer.zero_grad()
    x.grad = None
    layer.conv_impl = "direct"
    expected = layer(x)
    expected.backward(torch.ones_like(expected))
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    for grad, reference in zip(grads, [x.grad, *(p.grad for p in layer.parameters())]):
        torch.testing.assert_close(grad, reference, rtol=1e-8, atol=1e-8)
