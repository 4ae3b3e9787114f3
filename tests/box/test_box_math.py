"""The math of the box convolution: hand-computed cases, the dense equivalent, gradients.

Every implementation (`reference`, and the compiled `extension` on CPU) is checked
against a brute-force evaluation: an explicit fractional box kernel and `conv2d`.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.box import box_conv2d, box_conv2d_dense, box_kernel

IMPLS = ["reference", "extension"]


def random_boxes(channels: int, filters: int, extent: float, min_size: float, generator: torch.Generator, dtype=torch.float64):
    """Boxes with fractional edges, some crossing the border and some entirely outside."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(channels, filters, generator=generator, dtype=dtype)

    x_min, y_min = uniform(-extent, extent), uniform(-extent, extent)
    return x_min, x_min + uniform(min_size, extent), y_min, y_min + uniform(min_size, extent)


def box(value_x_min, value_x_max, value_y_min, value_y_max):
    return tuple(torch.tensor([[v]], dtype=torch.float64) for v in (value_x_min, value_x_max, value_y_min, value_y_max))


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


# --- hand-computed cases --------------------------------------------------------------


def test_integer_box_sums_a_block_with_zero_padding(impl):
    image = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    out = box_conv2d(image, *box(0, 1, 0, 1), normalize=False, impl=impl)  # rows i..i+1, columns j..j+1
    assert out[0, 0, 0, 0] == 0 + 1 + 4 + 5
    assert out[0, 0, 2, 1] == 9 + 10 + 13 + 14
    assert out[0, 0, 3, 3] == 15  # the rest of the box lies outside the image
    assert out[0, 0, 3, 2] == 14 + 15


def test_fractional_edges_weigh_partial_pixels(impl):
    image = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    # rows [i - 0.5, i + 1.5): half of row i-1, row i, half of row i+1; column j only
    out = box_conv2d(image, *box(-0.5, 0.5, 0, 0), normalize=False, impl=impl)
    assert out[0, 0, 2, 3] == pytest.approx(0.5 * image[0, 0, 1, 3] + image[0, 0, 2, 3] + 0.5 * image[0, 0, 3, 3])
    # corners multiply the two fractions: rows [i-0.25, i+1), columns [j-0.5, j+1)
    out = box_conv2d(image, *box(-0.25, 0, -0.5, 0), normalize=False, impl=impl)
    expected = 0.25 * 0.5 * image[0, 0, 1, 1] + 0.25 * image[0, 0, 1, 2] + 0.5 * image[0, 0, 2, 1] + image[0, 0, 2, 2]
    assert out[0, 0, 2, 2] == pytest.approx(expected)


def test_normalization_divides_by_the_full_area_even_when_clipped(impl):
    image = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    out = box_conv2d(image, *box(-1, 1, -1, 1), normalize=True, impl=impl)  # a 3x3 box, area 9
    assert out[0, 0, 1, 1] == pytest.approx(1.0)
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9)  # only 2x2 of it lies inside the image


def test_box_outside_the_image_gives_zero(impl):
    image = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    out = box_conv2d(image, *box(7, 9, 0, 1), normalize=False, impl=impl)
    assert out.abs().max() == 0


def test_inexact_mode_rounds_the_box_inward(impl):
    image = torch.randn(1, 1, 7, 7, dtype=torch.float64)
    rounded = box_conv2d(image, *box(-1.7, 1.3, -0.2, 2.9), exact=False, impl=impl)
    integer = box_conv2d(image, *box(-1, 1, 0, 2), exact=True, impl=impl)
    torch.testing.assert_close(rounded, integer)


def test_stride_samples_the_full_resolution_output(impl):
    image = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    boxes = random_boxes(3, 2, 4.0, 1.5, torch.Generator().manual_seed(0))
    full = box_conv2d(image, *boxes, impl=impl)
    strided = box_conv2d(image, *boxes, stride=(2, 3), impl=impl)
    assert strided.shape == (2, 6, 5, 4)
    torch.testing.assert_close(strided, full[:, :, ::2, ::3])


def test_output_channels_are_ordered_channel_major(impl):
    image = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    boxes = random_boxes(2, 3, 3.0, 1.5, torch.Generator().manual_seed(1))
    out = box_conv2d(image, *boxes, impl=impl)
    for channel in range(2):
        for filter_index in range(3):
            single = tuple(b[channel : channel + 1, filter_index : filter_index + 1] for b in boxes)
            expected = box_conv2d(image[:, channel : channel + 1], *single, impl=impl)
            torch.testing.assert_close(out[:, channel * 3 + filter_index : channel * 3 + filter_index + 1], expected)


# --- against the dense equivalent ---------------------------------------------------------


def test_dense_kernel_of_a_fractional_box():
    kernel = box_kernel(*box(-0.5, 0.25, 0.0, 1.0), normalize=False)
    rows = torch.tensor([0.5, 1.0, 0.25], dtype=torch.float64)  # offsets -1, 0, 1
    columns = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)  # offsets -1, 0, 1
    torch.testing.assert_close(kernel[0, 0], rows[:, None] * columns[None, :])


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("stride", [1, (2, 3)])
def test_matches_dense_convolution(impl, exact, normalize, stride):
    generator = torch.Generator().manual_seed(7)
    image = torch.randn(2, 3, 11, 13, generator=generator, dtype=torch.float64)
    boxes = random_boxes(3, 4, 9.0, 2.1, generator)  # reach past the 11x13 image
    expected = box_conv2d_dense(image, *boxes, stride=stride, normalize=normalize, exact=exact)
    out = box_conv2d(image, *boxes, stride=stride, normalize=normalize, exact=exact, impl=impl)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    seed=st.integers(0, 2**31),
    extent=st.floats(2.2, 12.0),  # sizes are drawn from [2.1, extent]: rounded boxes keep a pixel
    stride=st.integers(1, 3),
    exact=st.booleans(),
)
def test_matches_dense_convolution_property(height, width, seed, extent, stride, exact):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 2, height, width, generator=generator, dtype=torch.float64)
    boxes = random_boxes(2, 2, extent, 2.1, generator)
    expected = box_conv2d_dense(image, *boxes, stride=stride, exact=exact)
    out = box_conv2d(image, *boxes, stride=stride, exact=exact, impl="reference")
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


# --- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("stride", [1, (2, 1)])
def test_gradcheck_input_and_box(impl, normalize, stride):
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(2, 2, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = [b.requires_grad_() for b in random_boxes(2, 3, 5.0, 1.3, generator)]

    def function(x, *coordinates):
        return box_conv2d(x, *coordinates, stride=stride, normalize=normalize, exact=True, impl=impl)

    assert torch.autograd.gradcheck(function, (image, *boxes), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_input_in_inexact_mode(impl, normalize):
    generator = torch.Generator().manual_seed(4)
    image = torch.randn(1, 2, 6, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = random_boxes(2, 2, 4.0, 2.1, generator)
    assert torch.autograd.gradcheck(lambda x: box_conv2d(x, *boxes, normalize=normalize, exact=False, impl=impl), (image,))


def test_inexact_box_gradient_passes_straight_through_the_rounding(impl):
    """exact=False: the box gradient is the exact gradient at the rounded box."""
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64)
    boxes = random_boxes(2, 2, 4.0, 2.1, generator)
    weights = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)

    def box_gradient(coordinates, exact):
        coordinates = [c.clone().requires_grad_() for c in coordinates]
        (box_conv2d(image, *coordinates, exact=exact, impl=impl) * weights).sum().backward()
        return [c.grad for c in coordinates]

    rounded = (boxes[0].ceil(), boxes[1].floor(), boxes[2].ceil(), boxes[3].floor())
    for straight_through, exact in zip(box_gradient(boxes, exact=False), box_gradient(rounded, exact=True)):
        torch.testing.assert_close(straight_through, exact)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("stride", [1, (3, 2)])
def test_gradients_match_autograd_through_the_dense_kernel(impl, exact, normalize, stride):
    generator = torch.Generator().manual_seed(11)
    image = torch.randn(2, 3, 9, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = [b.requires_grad_() for b in random_boxes(3, 2, 7.0, 2.1, generator)]
    out = box_conv2d(image, *boxes, stride=stride, normalize=normalize, exact=exact, impl=impl)
    dense = box_conv2d_dense(image, *boxes, stride=stride, normalize=normalize, exact=exact)
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    ours = torch.autograd.grad(out, [image, *boxes], weights)
    theirs = torch.autograd.grad(dense, [image, *boxes], weights, allow_unused=True)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-10, atol=1e-10)
    if exact:  # the rounded box is piecewise constant: the dense path has no box gradient
        for mine, reference in zip(ours[1:], theirs[1:]):
            torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, (1, 2), (2, 3)])
@pytest.mark.parametrize("normalize", [True, False])
def test_box_gradients_where_edges_sit_on_grid_lines(stride, normalize):
    """Edges on whole pixels, at and beyond both borders: the compiled kernels split each row
    into stretches where an edge moves or is clamped, and one-sided slopes change cell exactly
    on grid lines (a lower edge on column W still has the cell before it, one on column 0 none)."""
    width, height = 24, 7
    generator = torch.Generator().manual_seed(12)
    image = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    # y ranges [y_min, y_max + 1): lower edges reaching 0 and W, upper edges reaching 0 and W,
    # boxes wider than the image, and near-integer edges on either side of a grid line
    # (lower edges on W at j = 21 / 18 for stride 1; (24, 26) from j = 0 without moving; upper on 0 at j = 6)
    columns = [(-6.0, 2.0), (3.0, 5.0), (-30.0, 29.0), (0.0, 0.0), (2.999, 8.001), (-4.001, -0.999), (6.0, 7.0), (24.0, 26.0),
               (-9.0, -7.0)]  # fmt: skip
    rows = [(-2.0, 1.0), (0.0, 3.0), (-1.5, 0.25), (1.0, 9.0), (-9.0, -1.0), (-0.999, 2.001), (2.0, 4.0), (-3.0, 0.0), (0.5, 1.5)]
    x_min, x_max = (torch.tensor([[r[k] for r in rows]] * 3, dtype=torch.float64) for k in (0, 1))
    y_min, y_max = (torch.tensor([[c[k] for c in columns]] * 3, dtype=torch.float64) for k in (0, 1))
    weights = torch.randn(2, 3 * len(columns), *box_conv2d(image, x_min, x_max, y_min, y_max, stride=stride).shape[-2:],
                          generator=generator, dtype=torch.float64)  # fmt: skip
    gradients = {}
    for impl in IMPLS:
        inputs = [t.clone().requires_grad_() for t in (image, x_min, x_max, y_min, y_max)]
        out = box_conv2d(*inputs, stride=stride, normalize=normalize, impl=impl)
        gradients[impl] = torch.autograd.grad(out, inputs, weights)
    for extension, reference in zip(gradients["extension"], gradients["reference"]):
        torch.testing.assert_close(extension, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, (1, 2)])
def test_float32_edges_a_hair_from_whole_pixels_take_the_references_cells(stride):
    """In float32, j * stride + c rounds to a whole number once the spacing of floats there
    exceeds twice the distance of c from one; the reference then interpolates that cell with
    fraction 0 and takes its one-sided slope from there, and the compiled kernels must too
    (a slope cell one pixel off changes the box gradient by a whole pixel's worth)."""
    generator = torch.Generator().manual_seed(13)
    image = torch.randn(2, 1, 6, 16, generator=generator)
    # y_max + 1 = -1.19e-7 (an upper edge a hair left of 0), y_min = 5e-8 (a lower edge a hair right of 0)
    y_min = torch.tensor([[5e-8, -3.0, -2.0000001]])
    y_max = torch.tensor([[3.5, -1.0000001, 1.0]])
    x_min, x_max = torch.tensor([[-1.0, -1.5, 0.0]]), torch.tensor([[1.0, 0.5, 2.0]])
    weights = torch.randn(2, 3, *box_conv2d(image, x_min, x_max, y_min, y_max, stride=stride).shape[-2:], generator=generator)
    gradients = {}
    for impl in IMPLS:
        inputs = [t.clone().requires_grad_() for t in (image, x_min, x_max, y_min, y_max)]
        out = box_conv2d(*inputs, stride=stride, normalize=False, impl=impl)
        gradients[impl] = (out, *torch.autograd.grad(out, inputs, weights))
    for extension, reference in zip(gradients["extension"], gradients["reference"]):
        torch.testing.assert_close(extension, reference, rtol=1e-5, atol=1e-5)


def test_only_requested_gradients_are_computed(impl):
    image = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    boxes = box(-1.5, 1.5, -1.5, 1.5)
    box_conv2d(image, *boxes, impl=impl).sum().backward()
    assert image.grad is not None and all(b.grad is None for b in boxes)


# --- precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_accumulate_in_float32(impl, dtype):
    generator = torch.Generator().manual_seed(6)
    image = torch.randn(2, 3, 32, 32, generator=generator)
    boxes = random_boxes(3, 2, 12.0, 2.1, generator, dtype=torch.float32)
    out = box_conv2d(image.to(dtype), *boxes, impl=impl)
    assert out.dtype == dtype
    expected = box_conv2d(image.to(dtype).double(), *(b.double() for b in boxes), impl=impl)
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)
