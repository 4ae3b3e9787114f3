"""CheckeredConv2d, the checkered pools and the samplers: semantics pinned against plain 2-D ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from layers import CheckeredConv2d
from layers.checkered import (
    CheckeredAdaptiveAvgPool2d,
    CheckeredAvgPool2d,
    CheckeredMaxPool2d,
    checkered_conv2d,
    checkered_conv2d_reference,
    checkered_max_pool2d,
    lattice_patterns,
    offset_groups,
)

PATTERN_SLICES = {0: ((0, 0), (1, 1)), 1: ((0, 1), (1, 0))}


def stride1_extended(x2d: torch.Tensor, weight: torch.Tensor, bias, padding: int) -> torch.Tensor:
    """Stride-1 convolution of one submap with one extra zero row and column at the bottom and right."""
    return F.conv2d(F.pad(x2d, (padding, padding + 1, padding, padding + 1)), weight, bias)


# --- hand-computed cases -----------------------------------------------------------------------


def test_identity_kernel_keeps_the_checkered_pixels_of_every_2x2_window():
    layer = CheckeredConv2d(1, 1, 1, stride=2, bias=False)
    layer.weight.data.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = layer(x)
    assert out.shape == (1, 1, 2, 2, 2)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))  # upper-left
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([[5.0, 7.0], [13.0, 15.0]]))  # lower-right


def test_odd_size_rounds_up_and_reads_zeros_past_the_edge():
    layer = CheckeredConv2d(1, 1, 1, stride=2, bias=False, sampler="complete")
    layer.weight.data.fill_(1.0)
    out = layer(torch.arange(9.0).view(1, 1, 3, 3))[0, 0]
    assert out.shape == (4, 2, 2)
    # complete multisampling: offsets (0,0), (1,0), (0,1), (1,1)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 2.0], [6.0, 8.0]]))
    torch.testing.assert_close(out[1], torch.tensor([[3.0, 5.0], [0.0, 0.0]]))
    torch.testing.assert_close(out[2], torch.tensor([[1.0, 0.0], [7.0, 0.0]]))
    torch.testing.assert_close(out[3], torch.tensor([[4.0, 0.0], [0.0, 0.0]]))


def test_lattice_patterns_are_the_papers():
    assert lattice_patterns(1) == [0]
    assert lattice_patterns(4) == [0, 1, 0, 1]
    assert lattice_patterns(8) == [0, 1, 1, 0, 0, 0, 1, 1]
    assert all(len(lattice_patterns(2**k)) == 2**k for k in range(10))
    assert sum(lattice_patterns(128)) == 60  # the paper's row: six runs of ten ones
    with pytest.raises(ValueError, match="submaps, got 3"):
        lattice_patterns(3)


# --- stride-2 semantics against the stride-1 output --------------------------------------------


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (9, 6)])
@pytest.mark.parametrize("sampler", ["naive", "lattice", "random"])
def test_stride2_submaps_are_the_stride1_output_at_the_checkered_offsets(size, sampler):
    torch.manual_seed(0)
    layer = CheckeredConv2d(3, 4, 3, stride=2, padding=1, sampler=sampler, seed=5).double()
    x = torch.randn(2, 3, 4, *size, dtype=torch.float64)
    out = layer(x)
    rows, cols = (size[0] + 1) // 2, (size[1] + 1) // 2
    assert out.shape == (2, 4, 8, rows, cols)
    groups = offset_groups(sampler, 4, torch.Generator().manual_seed(5))
    patterns = [0 if groups[0][s] == (0, 0) else 1 for s in range(4)]
    if sampler == "naive":
        assert patterns == [0, 0, 0, 0]
    if sampler == "lattice":
        assert patterns == [0, 1, 0, 1]
    for s, pattern in enumerate(patterns):
        full = stride1_extended(x[:, :, s], layer.weight, layer.bias, 1)
        for group, (dy, dx) in enumerate(PATTERN_SLICES[pattern]):
            torch.testing.assert_close(out[:, :, group * 4 + s], full[..., dy::2, dx::2][..., :rows, :cols])


def test_stride1_convolves_every_submap_with_shared_weights():
    torch.manual_seed(0)
    layer = CheckeredConv2d(3, 5, 3, padding=1, dilation=2, groups=1)
    x = torch.randn(2, 3, 3, 6, 5)
    out = layer(x)
    for s in range(3):
        torch.testing.assert_close(out[:, :, s], F.conv2d(x[:, :, s], layer.weight, layer.bias, padding=1, dilation=2))


def test_depth_mixes_neighbouring_submaps():
    torch.manual_seed(0)
    layer = CheckeredConv2d(4, 6, 3, padding=1, depth=2, groups=2)
    assert layer.weight.shape == (6, 2, 2, 3, 3)
    x = torch.randn(2, 4, 3, 5, 5)
    out = layer(x)
    assert out.shape == (2, 6, 2, 5, 5)
    for s in range(2):
        expected = sum(F.conv2d(x[:, :, s + d], layer.weight[:, :, d], None, padding=1, groups=2) for d in range(2))
        torch.testing.assert_close(out[:, :, s], expected + layer.bias.view(1, -1, 1, 1))


@pytest.mark.parametrize("sampler", ["naive", "lattice", "random", "three_quarters", "complete"])
@pytest.mark.parametrize("depth", [1, 2])
def test_fused_form_matches_the_four_convolution_reference(sampler, depth):
    torch.manual_seed(1)
    layer = CheckeredConv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, depth=depth, sampler=sampler, seed=2)
    x = torch.randn(2, 4, 3 + depth, 9, 8)  # 4 submaps after the depth mixing
    sampling = offset_groups(sampler, 4, torch.Generator().manual_seed(2))
    expected = checkered_conv2d_reference(x, layer.weight, layer.bias, stride=2, padding=layer.padding, groups=2, sampling=sampling)
    torch.testing.assert_close(layer(x), expected)


def test_stride2_computes_two_strided_convolutions_not_four():
    layer = CheckeredConv2d(8, 8, 3, stride=2, padding=1)
    x = torch.randn(1, 8, 2, 16, 16)
    plain = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
    with FlopCounterMode(display=False) as one:
        plain(x[:, :, 0])
    with FlopCounterMode(display=False) as checkered:
        layer(x)
    with FlopCounterMode(display=False) as reference:
        checkered_conv2d_reference(x, layer.weight, layer.bias, stride=2, padding=layer.padding, sampling=offset_groups("naive", 2))
    assert checkered.get_total_flops() == 2 * 2 * one.get_total_flops()  # 2 submaps x 2 kept samples
    assert reference.get_total_flops() == 2 * checkered.get_total_flops()


def test_random_sampler_redraws_in_training_and_is_fixed_in_eval():
    x = torch.randn(1, 1, 16, 4, 4)

    def make(seed):
        layer = CheckeredConv2d(1, 1, 1, stride=2, bias=False, sampler="random", seed=seed)
        layer.weight.data.fill_(1.0)
        return layer

    a, b = make(7), make(7)
    first, second = a(x), a(x)
    assert not torch.equal(first, second)  # redrawn (16 submaps: 2**-16 chance of a tie)
    torch.testing.assert_close(b(x), first)  # reproducible from the seed
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), a(x))
    torch.testing.assert_close(a(x), b(x))
    assert not torch.equal(make(8).eval()(x), a(x))


# --- pooling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [7, 8])
def test_max_pool_stride2_matches_the_stride1_pool_at_the_offsets(size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, size, size)
    out = CheckeredMaxPool2d(3, 2, 1, sampler="lattice")(x)  # 2 submaps: lattice is [0, 0]
    for s in range(2):
        full = F.max_pool2d(F.pad(x[:, :, s], (1, 2, 1, 2), value=float("-inf")), 3, 1)
        for group, (dy, dx) in enumerate(PATTERN_SLICES[0]):
            torch.testing.assert_close(out[:, :, group * 2 + s], full[..., dy::2, dx::2][..., : out.shape[-2], : out.shape[-1]])


def test_avg_pool_and_adaptive_pool_act_per_submap():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 6, 6)
    avg = CheckeredAvgPool2d(2)(x)
    assert avg.shape == (2, 3, 4, 3, 3)
    for s in range(2):
        torch.testing.assert_close(avg[:, :, s], F.avg_pool2d(x[:, :, s], 2))
        torch.testing.assert_close(avg[:, :, 2 + s], F.avg_pool2d(F.pad(x[:, :, s, 1:, 1:], (0, 1, 0, 1)), 2))
    adaptive = CheckeredAdaptiveAvgPool2d((1, 1))(x)
    assert adaptive.shape == (2, 3, 2, 1, 1)
    torch.testing.assert_close(adaptive[..., 0, 0], x.mean((-2, -1)))


# --- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["random", "three_quarters"])
def test_gradcheck_conv_and_pool(sampler):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    sampling = offset_groups(sampler, 1, torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(
        lambda x, w, b: checkered_conv2d(x, w, b, stride=2, padding=(1, 1, 1, 1), sampling=sampling), (x, weight, bias)
    )
    pool_sampling = offset_groups(sampler, 2, torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(
        lambda x: checkered_max_pool2d(x, (2, 2), stride=2, sampling=pool_sampling), (x,)
    )


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 3}, "stride=3 is not supported"),
        ({"stride": (1, 2)}, r"stride=\(1, 2\) is not supported"),
        ({"sampler": "diagonal"}, "sampler='diagonal' is not one of"),
        ({"depth": 0}, "depth=0 must be >= 1"),
        ({"groups": 3}, "divisible by groups=3"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CheckeredConv2d(4, 6, 3, **kwargs)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="depth=3 needs 1 <= depth <= submaps, got 2"):
        CheckeredConv2d(2, 2, 3, depth=3)(torch.randn(1, 2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"got shape \(2, 5, 5\)"):
        CheckeredConv2d(2, 2, 3)(torch.randn(2, 5, 5))
    with pytest.raises(ValueError, match="submaps, got 3"):
        CheckeredConv2d(2, 2, 3, stride=2, sampler="lattice")(torch.randn(1, 2, 3, 5, 5))


# --- the visualiser ------------------------------------------------------------------------------


def test_survivors_of_three_steps(tmp_path):
    from layers.checkered.visualize import main, survivors

    traditional = survivors(32, 3, "traditional")
    assert int((traditional > 0).sum()) == 16 and traditional[0, 0] == 1 and traditional[8, 8] == 1
    naive, lattice = survivors(32, 3, "naive"), survivors(32, 3, "lattice")
    assert int((naive > 0).sum()) == int((lattice > 0).sum()) == 128  # two of four pixels kept per step
    rows, cols = (naive > 0).nonzero().unbind(1)
    assert set(((rows - cols) % 8).tolist()) == {0}  # naive: all on the diagonals of each 8x8 block
    rows, cols = (lattice > 0).nonzero().unbind(1)
    assert len(set(((rows - cols) % 8).tolist())) > 1  # lattice: spread off them
    out = main(["--size", "16", "--steps", "2", "--out", str(tmp_path / "s.png")])
    assert out.read_bytes().startswith(b"\x89PNG")
