"""The CUDA kernels against the reference (run with `-m cuda` on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

from layers import BoxConv2d, box_conv2d

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def random_boxes(channels, filters, generator):
    x_min = torch.empty(channels, filters).uniform_(-20, 10, generator=generator)
    y_min = torch.empty(channels, filters).uniform_(-20, 10, generator=generator)
    return [
        x_min,
        x_min + torch.empty(channels, filters).uniform_(2.1, 25, generator=generator),
        y_min,
        y_min + torch.empty(channels, filters).uniform_(2.1, 25, generator=generator),
    ]


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_cuda_forward_and_backward_match_reference(exact, normalize, stride):
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 8, 45, 70, generator=generator, dtype=torch.float64)
    boxes = random_boxes(8, 4, generator)
    weights = torch.randn(3, 32, -(-45 // stride), -(-70 // stride), generator=generator, dtype=torch.float64)
    results = {}
    for device, impl in (("cpu", "reference"), ("cuda", "extension")):
        x = image.to(device).requires_grad_()
        coordinates = [b.double().to(device).requires_grad_() for b in boxes]
        out = box_conv2d(x, *coordinates, stride=stride, normalize=normalize, exact=exact, impl=impl)
        (out * weights.to(device)).sum().backward()
        results[impl] = [t.detach().cpu() for t in (out, x.grad, *(c.grad for c in coordinates))]
    for reference, cuda in zip(results["reference"], results["extension"]):
        torch.testing.assert_close(cuda, reference, rtol=1e-9, atol=1e-9)


def test_cuda_gradcheck():
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, 2, 7, 8, generator=generator, dtype=torch.float64, device="cuda", requires_grad=True)
    boxes = [b.double().cuda().requires_grad_() for b in random_boxes(2, 2, generator)]
    assert torch.autograd.gradcheck(lambda x, *c: box_conv2d(x, *c, impl="extension"), (image, *boxes))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_low_precision(dtype):
    layer = BoxConv2d(16, 4, 64, 128).cuda()
    image = torch.randn(4, 16, 64, 128, device="cuda")
    expected = layer(image.double().float())
    out = layer(image.to(dtype))
    assert out.dtype == dtype
    tolerance = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(out.float(), expected, rtol=tolerance, atol=tolerance)


def test_auto_selects_the_cuda_extension():
    from layers.box import extension

    assert extension.available(torch.device("cuda"))
    layer = BoxConv2d(2, 2, 16, 16).cuda()
    layer(torch.randn(1, 2, 16, 16, device="cuda")).sum().backward()
    assert layer.x_min.grad is not None
