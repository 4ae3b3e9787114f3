"""BoxConv2d, the registered op, argument checks, the conv=box family and the fast paths."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from layers import BoxConv2d, box_conv2d
from layers._build import cuda_home, load_extension
from layers.box import box_conv, box_conv2d_dense
from layers.box.box_conv import MIN_BOX_SIZE
from layers.box.extension import _BUILDS
from layers.box.functional import macs

# --- the module ----------------------------------------------------------------------------------


def test_parameters_are_stored_divided_by_the_reparametrization_scale():
    layer = BoxConv2d(3, 5, max_input_h=20, max_input_w=40, reparametrization_factor=4)
    assert all(p.shape == (3, 5) for p in (layer.x_min, layer.x_max, layer.y_min, layer.y_max))
    x_min, x_max, y_min, y_max = layer.box_coordinates()
    torch.testing.assert_close(x_min, layer.x_min * 80)
    torch.testing.assert_close(y_max, layer.y_max * 160)


def test_initialisation_is_seeded_by_torch_and_spread_over_the_image():
    torch.manual_seed(0)
    first = BoxConv2d(8, 16, 64, 32)
    torch.manual_seed(0)
    second = BoxConv2d(8, 16, 64, 32)
    for a, b in zip(first.box_coordinates(), second.box_coordinates()):
        torch.testing.assert_close(a, b)
    x_min, x_max, y_min, y_max = first.box_coordinates()
    assert (x_max > x_min).all() and (y_max > y_min).all()
    assert x_min.min() >= -64 and x_max.max() <= 64 and y_min.min() >= -32 and y_max.max() <= 32
    assert (x_max - x_min).std() > 1  # sizes vary


def test_clip_keeps_boxes_in_range_and_above_the_minimum_size():
    layer = BoxConv2d(1, 3, 10, 10, exact=True)
    layer.set_box_coordinates(
        torch.tensor([[-50.0, 3.0, 2.0]]), torch.tensor([[40.0, 3.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[5.0, 5.0, 5.0]])
    )
    layer.clip_()
    x_min, x_max, _, _ = (c.detach()[0] for c in layer.box_coordinates())
    assert x_min[0].item() == pytest.approx(-11) and x_max[0].item() == pytest.approx(9)
    gap = MIN_BOX_SIZE[True] - 0.9999
    assert (x_max - x_min)[1:].tolist() == pytest.approx([gap, gap], abs=1e-5)
    assert (x_max + x_min)[1:].tolist() == pytest.approx([6.0, 3.0], abs=1e-5)  # re-centred in place


def test_training_forward_clips_and_eval_clips_once():
    layer = BoxConv2d(1, 1, 8, 8)
    layer.set_box_coordinates(torch.tensor([[-30.0]]), torch.tensor([[30.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    layer.eval()
    assert layer.box_coordinates()[1].item() == pytest.approx(7)
    layer.set_box_coordinates(torch.tensor([[-30.0]]), torch.tensor([[30.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    layer(torch.zeros(1, 1, 8, 8))  # eval: no clipping
    assert layer.box_coordinates()[1].item() == pytest.approx(30)
    layer.train()
    layer(torch.zeros(1, 1, 8, 8))
    assert layer.box_coordinates()[1].item() == pytest.approx(7)


def test_module_equals_the_dense_convolution_of_its_boxes():
    layer = BoxConv2d(2, 3, 12, 12, stride=2, impl="reference").double().eval()
    image = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    expected = box_conv2d_dense(image, *layer.box_coordinates(), stride=2)
    torch.testing.assert_close(layer(image), expected, rtol=1e-10, atol=1e-10)


def test_module_learns_box_coordinates():
    layer = BoxConv2d(1, 2, 16, 16)
    layer(torch.randn(2, 1, 16, 16)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (layer.x_min, layer.x_max, layer.y_min, layer.y_max))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_planes": 0}, "in_planes=0"),
        ({"num_filters": 2.5}, "num_filters=2.5"),
        ({"max_input_h": -1}, "max_input_h=-1"),
        ({"reparametrization_factor": 0}, "reparametrization_factor=0"),
        ({"impl": "fast"}, "impl='fast'"),
    ],
)
def test_module_rejects_bad_arguments(kwargs, message):
    arguments = {"in_planes": 1, "num_filters": 1, "max_input_h": 4, "max_input_w": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        BoxConv2d(**arguments)


# --- the functional API ---------------------------------------------------------------------------


def coordinates(channels=2, filters=3):
    return [torch.zeros(channels, filters), torch.ones(channels, filters), torch.zeros(channels, filters), torch.ones(channels, filters)]


@pytest.mark.parametrize(
    "image, boxes, kwargs, message",
    [
        (torch.zeros(2, 5, 5), coordinates(), {}, r"input must be \(B, C, H, W\)"),
        (torch.zeros(1, 3, 5, 5), coordinates(), {}, "C=3 input channels"),
        (torch.zeros(1, 2, 5, 5, dtype=torch.long), coordinates(), {}, "floating point"),
        (torch.zeros(1, 2, 5, 5), coordinates()[:3] + [torch.ones(2, 4)], {}, "y_max has shape"),
        (torch.zeros(1, 2, 5, 5), coordinates(), {"stride": 0}, "stride=0"),
        (torch.zeros(1, 2, 5, 5), coordinates(), {"impl": "cuda"}, "impl='cuda'"),
    ],
)
def test_functional_rejects_bad_input(image, boxes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        box_conv2d(image, *boxes, **kwargs)


def test_registered_op_passes_torch_library_checks():
    image = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    boxes = [torch.tensor([[-1.5, 0.2], [0.5, -2.3]], dtype=torch.float64).requires_grad_()]
    boxes += [(boxes[0].detach() + 2.2).requires_grad_()] * 1
    boxes += [torch.tensor([[0.1, -1.1], [-0.6, 0.3]], dtype=torch.float64).requires_grad_()]
    boxes += [(boxes[2].detach() + 3.1).requires_grad_()]
    for impl in ("reference", "extension"):
        torch.library.opcheck(torch.ops.farconv.box_conv2d.default, (image, *boxes, 1, 2, True, True, impl))


def test_flop_counter_counts_box_convolutions():
    layer = BoxConv2d(4, 3, 16, 16).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = layer(torch.randn(2, 4, 16, 16))
    assert counter.get_total_flops() == 2 * macs(out.shape, normalize=True, exact=True) == 2 * 17 * out.numel()


def test_torch_compile_traces_the_op_without_graph_breaks():
    layer = BoxConv2d(2, 2, 8, 8).eval()
    image = torch.randn(1, 2, 8, 8)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(image), layer(image))


# --- the conv=box family ------------------------------------------------------------------------


def test_autocast_runs_the_op_in_its_dtype_with_float32_boxes():
    layer = BoxConv2d(3, 2, 16, 16)
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, layer(x.bfloat16()), rtol=0, atol=0)


def test_box_family_replaces_spatial_convolutions_only():
    spatial = box_conv(8, 16, 3, stride=2, padding=1, max_input_size=(16, 16))
    assert spatial(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)
    assert isinstance(box_conv(8, 16, 1), torch.nn.Conv2d)
    with pytest.raises(ValueError, match="dim=1"):
        box_conv(8, 16, 3, dim=1)
    with pytest.raises(ValueError, match="groups=8"):
        box_conv(8, 8, 3, groups=8)


# --- the fast path and its fallback -----------------------------------------------------------------


def test_extension_equals_reference_on_cpu():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(4, 8, 33, 47, generator=generator)
    torch.manual_seed(0)
    layer = BoxConv2d(8, 4, 33, 47)
    outputs = {}
    for impl in ("reference", "extension"):
        layer.impl = impl
        layer.zero_grad()
        image.grad = None
        image.requires_grad_()
        out = layer(image)
        out.backward(torch.ones_like(out))
        outputs[impl] = (out.detach(), image.grad.clone(), layer.x_min.grad.clone(), layer.y_max.grad.clone())
    # A box gradient sums ~10^4 terms of both signs: float32 leaves each path an error of about
    # 1e-6 of the largest gradient, whatever an element's own size (measured over 60 draws: at
    # most 0.14 of this tolerance); a slope one pixel off is far larger.
    for reference, extension in zip(outputs["reference"], outputs["extension"]):
        torch.testing.assert_close(extension, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())


def _kernel_inputs(batch: int, channels: int, filters: int, size=(9, 11)):
    """The compiled CPU kernels and float64 arguments for them: image, output gradient, edges,
    mirrored edges and scale of a seeded layer's boxes."""
    from layers.box import extension

    generator = torch.Generator().manual_seed(1)
    image = torch.randn(batch, channels, *size, generator=generator, dtype=torch.float64)
    grad = torch.randn(batch, channels * filters, *size, generator=generator, dtype=torch.float64)
    torch.manual_seed(1)
    coordinates = tuple(c.detach().double() for c in BoxConv2d(channels, filters, *size).box_coordinates())
    edges, mirrored, scale = extension.kernel_arguments(image, coordinates, True, True)
    return extension.library(torch.device("cpu")), image, grad, edges, mirrored, scale


def test_backward_kernels_compute_the_gradients_asked_for_and_no_others():
    kernels, image, grad, edges, mirrored, scale = _kernel_inputs(2, 3, 2)
    grad_input, totals = kernels.box_backward(image, grad, edges, mirrored, scale, 1, 1, True, True, True)
    assert kernels.box_backward(image, grad, edges, mirrored, scale, 1, 1, True, True, False)[1] is None
    assert kernels.box_backward(image, grad, edges, mirrored, scale, 1, 1, True, False, True)[0] is None
    only_input = kernels.box_backward(image, grad, edges, mirrored, scale, 1, 1, True, True, False)[0]
    only_totals = torch.full_like(totals, float("nan"))  # box_backward_out zeroes it first
    kernels.box_backward_out(image, grad, edges, mirrored, scale, 1, 1, True, None, only_totals)
    torch.testing.assert_close(only_input, grad_input, rtol=0, atol=0)
    torch.testing.assert_close(only_totals, totals, rtol=0, atol=0)
    assert totals.abs().min() > 0  # every box has a gradient here


def test_kernels_with_no_boxes_or_no_images_give_zero_gradients():
    kernels, image, grad, edges, mirrored, scale = _kernel_inputs(2, 3, 2)
    no_boxes = [edge[:, :0] for edge in edges]
    out = kernels.box_sums(image, no_boxes, scale[:, :0], 1, 1, True)
    assert out.shape == (2, 0, 9, 11)
    grad_input, totals = kernels.box_backward(image, out, no_boxes, no_boxes, scale[:, :0], 1, 1, True, True, True)
    assert torch.equal(grad_input, torch.zeros_like(image)) and totals.shape == (5, 3, 0)
    grad_input, totals = kernels.box_backward(image[:0], grad[:0], edges, mirrored, scale, 1, 1, True, True, True)
    assert grad_input.shape == (0, 3, 9, 11) and torch.equal(totals, torch.zeros(5, 3, 2, dtype=torch.float64))


def test_kernels_reject_mismatched_boxes_and_devices():
    kernels, image, grad, edges, mirrored, scale = _kernel_inputs(2, 3, 2)
    with pytest.raises(RuntimeError, match=r"mirrored boxes are \[3, 1\], boxes \[3, 2\]"):
        kernels.box_backward(image, grad, edges, [m[:, :1].contiguous() for m in mirrored], scale, 1, 1, True, True, True)
    with pytest.raises(RuntimeError, match="mirrored boxes r_hi is Float, expected Double"):
        kernels.box_backward(image, grad, edges, [mirrored[0], mirrored[1].float(), *mirrored[2:]], scale, 1, 1, True, True, True)
    with pytest.raises(RuntimeError, match="input is on meta, these kernels run on cpu"):
        kernels.box_sums(image.to("meta"), edges, scale, 1, 1, True)


def test_forward_kernels_split_a_plane_by_box_when_threads_outnumber_planes():
    kernels, image, _, edges, _, scale = _kernel_inputs(1, 1, 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # 1 plane, 2 threads: one task per box
        split = kernels.box_sums(image, edges, scale, 1, 2, True)
        torch.set_num_threads(1)  # one task for the plane's 3 boxes
        whole = kernels.box_sums(image, edges, scale, 1, 2, True)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(split, whole, rtol=0, atol=0)
    assert split.shape == (1, 3, 9, 6) and split.abs().min() > 0


def test_failed_build_warns_once_and_returns_none(tmp_path):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    with pytest.warns(UserWarning, match="cannot build the farconv_test_broken extension") as record:
        assert load_extension("farconv_test_broken", [broken], cuda=False) is None
    assert len(record) == 1 and "\n" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_extension("farconv_test_broken", [broken], cuda=False) is None  # cached, silent


@pytest.mark.parametrize(
    ("capability", "built_as", "vector_flags"),
    [("AVX2", "farconv_test_isa_avx2", ["-mavx2", "-mfma"]), ("AVX512", "farconv_test_isa_avx2", ["-mavx2", "-mfma"]),
     ("DEFAULT", "farconv_test_isa", [])],
)  # fmt: skip
def test_cpu_builds_use_and_name_the_machines_vector_instructions(monkeypatch, capability, built_as, vector_flags):
    """A build is named after the instructions it may use, so a cache shared by machines with
    different CPUs never hands one a build it cannot run."""
    from torch.utils import cpp_extension

    from layers import _build

    calls = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: calls.append(kwargs) or object())
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(_build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_build.sys, "platform", "linux")
    monkeypatch.setattr(_build, "_CACHE", {})
    assert load_extension("farconv_test_isa", [Path("kernels.cpp")], cuda=False) is not None
    assert calls[0]["name"] == built_as
    assert calls[0]["extra_cflags"] == _build.CPU_FLAGS + vector_flags


def test_a_failed_vector_build_is_retried_without_the_vector_instructions(monkeypatch):
    from torch.utils import cpp_extension

    from layers import _build

    def load(**kwargs):
        if "-mavx2" in kwargs["extra_cflags"]:
            raise RuntimeError("error: unrecognized command-line option '-mavx2'")
        return kwargs["name"]

    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(_build, "instruction_set", lambda: ("avx2", ["-mavx2", "-mfma"]))
    monkeypatch.setattr(_build, "_CACHE", {})
    with pytest.warns(UserWarning, match="the avx2 build of the farconv_test_retry extension failed .*-mavx2.*; built it without avx2") as record:
        assert load_extension("farconv_test_retry", [Path("kernels.cpp")], cuda=False) == "farconv_test_retry"
    assert len(record) == 1 and "\n" not in str(record[0].message)


@pytest.mark.slow
@pytest.mark.skipif(cuda_home() is None, reason="needs the CUDA toolkit (nvcc)")
def test_cuda_extension_compiles(monkeypatch, tmp_path):
    """The CUDA source builds with this machine's toolchain (no GPU needed to compile)."""
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name, sources = _BUILDS["cuda"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = load_extension(name + "_compile_check", sources, cuda=True)
    assert {"box_sums", "box_sums_out", "box_backward", "box_backward_out"} <= set(dir(module))
