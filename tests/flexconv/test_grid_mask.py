"""Grid and cropping arithmetic of continuous kernels, checked against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from layers.flexconv import FlexConv1d, FlexConv2d
from layers.flexconv.grid import PositionGrid, check_horizon, grid_size, samples_per_unit
from layers.flexconv.mask import crop_window, gaussian, threshold_radius


@pytest.mark.parametrize(
    "horizon, input_size, causal, expected",
    [
        ("same", (784,), True, (784,)),
        ("same", (32, 32), False, (33, 33)),  # made odd: the kernel needs a centre
        ("same", (33, 17), False, (33, 17)),
        ("full", (40,), True, (79,)),
        ("full", (16, 16), False, (31, 31)),
        (33, (32, 32), False, (33, 33)),
        (5, (40,), True, (5,)),
    ],
)
def test_grid_size(horizon, input_size, causal, expected):
    assert grid_size(horizon, input_size, causal) == expected


@pytest.mark.parametrize("bad", [4, 0, -3, "half", 2.5, True])
def test_bad_horizons_are_named(bad):
    with pytest.raises(ValueError, match=f"horizon={bad!r}"):
        check_horizon(bad, "FlexConv2d")


def test_horizon_given_as_digits():
    assert check_horizon("33", "CKConv2d") == 33


def test_position_grid_is_cached_and_row_major():
    grid = PositionGrid()
    axis = grid.axis(5, torch.device("cpu"), torch.float32)
    assert torch.equal(axis, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert grid.axis(5, torch.device("cpu"), torch.float32) is axis
    positions = grid.positions([axis[:2], axis[3:]])
    assert positions.tolist() == [[-1.0, 0.5], [-1.0, 1.0], [-0.5, 0.5], [-0.5, 1.0]]
    assert grid.axis(1, torch.device("cpu"), torch.float32).tolist() == [0.0]


def test_threshold_radius_is_where_the_gaussian_meets_the_threshold():
    radius = threshold_radius(0.075, 0.1)
    assert radius == pytest.approx(0.075 * math.sqrt(2 * math.log(10)))
    value = gaussian(torch.tensor(0.3 + radius), torch.tensor(0.3), torch.tensor(0.075))
    assert value.item() == pytest.approx(0.1, rel=1e-5)


def test_centred_crop_by_hand():
    # 33 samples: 16 per unit; sigma 0.075, threshold 0.1 -> radius 0.161 -> 2.57 samples: the
    # samples within reach and the first beyond it (its cell still overlaps the mask's region) -> 3
    assert crop_window(33, 0.0, 0.075, 0.1, causal=False) == (13, 20)
    # the mean moved to -0.25: the window stays centred and reaches |-0.25| + 0.161 -> 6.57 samples -> 7
    assert crop_window(33, -0.25, 0.075, 0.1, causal=False) == (9, 24)
    # a wide mask keeps the whole grid
    assert crop_window(33, 0.0, 2.0, 0.1, causal=False) == (0, 33)
    # a collapsed mask keeps the centre sample and its neighbours
    assert crop_window(33, 0.0, 1e-6, 0.1, causal=False) == (15, 18)


def test_causal_crop_keeps_the_newest_end_by_hand():
    # 40 samples: 19.5 per unit; the mask exceeds 0.1 on x >= 1 - 0.161 = 0.839, i.e. from index
    # 35.86: indices 36..39 and the first one beyond, 35
    start, stop = crop_window(40, 1.0, 0.075, 0.1, causal=True)
    assert (start, stop) == (35, 40)
    axis = torch.linspace(-1, 1, 40)
    assert torch.all(gaussian(axis[start + 1 : stop], torch.tensor(1.0), torch.tensor(0.075)) >= 0.1)
    assert gaussian(axis[start], torch.tensor(1.0), torch.tensor(0.075)) < 0.1
    assert crop_window(40, 1.0, 5.0, 0.1, causal=True) == (0, 40)
    assert crop_window(40, 3.0, 0.01, 0.1, causal=True) == (39, 40)  # at least one sample


def test_inside_crop_by_hand():
    # rjbruin/flexconv's crop: only the samples strictly within reach. 2.57 samples -> 2 per side
    assert crop_window(33, 0.0, 0.075, 0.1, causal=False, rule="inside") == (14, 19)
    assert crop_window(33, -0.25, 0.075, 0.1, causal=False, rule="inside") == (10, 23)  # 6.57 -> 6
    assert crop_window(33, 0.0, 2.0, 0.1, causal=False, rule="inside") == (0, 33)
    assert crop_window(33, 0.0, 1e-6, 0.1, causal=False, rule="inside") == (16, 17)  # the centre alone
    # causal, 40 samples: the mask exceeds 0.1 from index 35.86 -> indices 36..39
    start, stop = crop_window(40, 1.0, 0.075, 0.1, causal=True, rule="inside")
    assert (start, stop) == (36, 40)
    axis = torch.linspace(-1, 1, 40)
    assert torch.all(gaussian(axis[start:stop], torch.tensor(1.0), torch.tensor(0.075)) >= 0.1)
    assert crop_window(40, 3.0, 0.01, 0.1, causal=True, rule="inside") == (39, 40)  # at least one sample
    # on a 2x finer grid it ends where it ended on the grid it was trained on
    assert crop_window(65, 0.0, 0.075, 0.1, causal=False, ratio=2.0, rule="inside") == (28, 37)
    with pytest.raises(ValueError, match="crop rule='floor' must be one of cover, inside"):
        crop_window(33, 0.0, 0.075, 0.1, causal=False, rule="floor")


@pytest.mark.parametrize("size, mean, sigma", [(33, 0.1, 0.2), (65, -0.4, 0.05), (17, 0.0, 0.3), (101, 0.7, 0.01)])
def test_centred_crop_keeps_the_samples_within_reach_and_one_beyond(size, mean, sigma):
    start, stop = crop_window(size, mean, sigma, 0.1, causal=False)
    axis = torch.linspace(-1, 1, size, dtype=torch.float64)
    reach = abs(mean) + threshold_radius(sigma, 0.1)
    inside = (axis.abs() <= reach + 1e-12).nonzero().flatten()
    expected = (max(inside.min().item() - 1, 0), min(inside.max().item() + 2, size))
    assert (start, stop) == expected
    assert (stop - start) % 2 == 1


@pytest.mark.parametrize("coarse, sigma", [(15, 0.182), (15, 0.075), (9, 0.318), (33, 0.12)])
def test_crop_on_a_finer_grid_keeps_the_continuous_support(coarse, sigma):
    """Quantised on the grid the kernel was trained on, the crop on a 2x finer grid ends on the
    same position: the re-sampled kernel gains no samples beyond its outermost trained one."""
    fine = 2 * coarse - 1
    start, stop = crop_window(coarse, 0.0, sigma, 0.1, causal=False)
    fine_start, fine_stop = crop_window(fine, 0.0, sigma, 0.1, causal=False, ratio=2.0)
    outermost = torch.linspace(-1, 1, coarse, dtype=torch.float64)[stop - 1]
    assert torch.linspace(-1, 1, fine, dtype=torch.float64)[fine_stop - 1] == pytest.approx(outermost.item())
    assert fine_stop - fine_start == 2 * (stop - start) - 1


def test_flexconv_kernel_size_follows_its_mask():
    layer = FlexConv2d(1, 1, 33)
    layer(torch.zeros(1, 1, 32, 32))
    assert layer.kernel_size == (7, 7)
    inside = FlexConv2d(1, 1, 33, mask_crop="inside")
    inside(torch.zeros(1, 1, 32, 32))
    assert inside.kernel_size == (5, 5)  # the reference's crop of the initial mask
    with pytest.raises(ValueError, match="FlexConv2d: mask crop='ceil' must be one of cover, inside"):
        FlexConv2d(1, 1, 33, mask_crop="ceil")
    with torch.no_grad():
        layer.mask_sigma.fill_(0.5)
    layer(torch.zeros(1, 1, 32, 32))
    assert layer.kernel_size == (33, 33)
    layer.mask_dynamic_cropping = False
    with torch.no_grad():
        layer.mask_sigma.fill_(0.075)
    layer(torch.zeros(1, 1, 32, 32))
    assert layer.kernel_size == (33, 33)


def test_learned_extent_in_input_samples():
    layer = FlexConv1d(1, 2)
    assert layer.learned_extent() == {}  # horizon 'same': the grid is known after a forward
    layer(torch.zeros(1, 1, 40))
    extent = layer.learned_extent()["length"]
    assert extent.item() == pytest.approx(threshold_radius(0.075, 0.1) * samples_per_unit(40) + 1)
    square = FlexConv2d(1, 2, 33)
    extents = square.learned_extent()
    assert set(extents) == {"height", "width"}
    assert extents["height"].item() == pytest.approx(2 * threshold_radius(0.075, 0.1) * 16 + 1)
