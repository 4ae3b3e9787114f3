"""The octave convolution's math: hand-computed cases, the paper's four-path formula evaluated
directly, the plain convolution at alpha = 0, the fused path against the reference, odd and
large sizes, parameter counts, grouped/depthwise against dense equivalents, and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from layers.octave import OctaveConv, downsample, octave_conv2d, octave_conv2d_reference, upsample_to
from layers.octave.functional import add_upsampled


def pair(conv: OctaveConv, batch: int, height: int, width: int, dtype=torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    high, low = conv.channels_in
    x_h = torch.randn(batch, high, height, width, generator=generator, dtype=dtype)
    x_l = torch.randn(batch, low, (height + 1) // 2, (width + 1) // 2, generator=generator, dtype=dtype) if low else None
    return x_h, x_l


def test_hand_computed_constant_maps():
    """1x1 paths on constant maps: y_h = w_hh * 1 + w_lh * 2, y_l = w_hl * 1 + w_ll * 2 (+ bias), everywhere."""
    conv = OctaveConv(2, 2, 1, 0.5, 0.5, bias=True)
    with torch.no_grad():
        for name, value in (("weight_hh", 3.0), ("weight_hl", 5.0), ("weight_lh", 7.0), ("weight_ll", 11.0)):
            getattr(conv, name).fill_(value)
        conv.bias_h.fill_(0.5)
        conv.bias_l.fill_(-0.5)
    y_h, y_l = conv((torch.ones(1, 1, 5, 7), torch.full((1, 1, 3, 4), 2.0)))
    assert y_h.shape == (1, 1, 5, 7) and y_l.shape == (1, 1, 3, 4)
    assert torch.all(y_h == 3 + 7 * 2 + 0.5) and torch.all(y_l == 5 + 11 * 2 - 0.5)


def test_downsample_and_upsample_hand_computed():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert downsample(x).flatten().tolist() == [2.0, 3.5, 6.5, 8.0]  # border windows average only their pixels
    assert upsample_to(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), (3, 3)).flatten().tolist() == [1, 1, 2, 1, 1, 2, 3, 3, 4]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_four_path_formula_evaluated_directly(stride, impl):
    """Y_H = f(X_H; W_HH) + up(f(X_L; W_LH)), Y_L = f(X_L; W_LL) + f(pool(X_H); W_HL), with even sizes."""
    conv = OctaveConv(8, 12, 3, 0.25, 0.5, stride=stride, padding=1, bias=True, impl=impl)
    x_h, x_l = pair(conv, 2, 16, 12)
    y_h, y_l = conv((x_h, x_l))
    same = dict(padding=1)
    if stride == 2:
        x_h, low_for_low = F.avg_pool2d(x_h, 2), F.avg_pool2d(x_l, 2)
        from_low = F.conv2d(x_l, conv.weight_lh, **same)
    else:
        low_for_low = x_l
        from_low = F.interpolate(F.conv2d(x_l, conv.weight_lh, **same), scale_factor=2, mode="nearest")
    expected_h = F.conv2d(x_h, conv.weight_hh, conv.bias_h, **same) + from_low
    expected_l = F.conv2d(low_for_low, conv.weight_ll, conv.bias_l, **same) + F.conv2d(F.avg_pool2d(x_h, 2), conv.weight_hl, **same)
    torch.testing.assert_close(y_h, expected_h)
    torch.testing.assert_close(y_l, expected_l)


CASES = [  # (in, out, k, alpha_in, alpha_out, stride, dilation, bias, high_to_low, low_to_high)
    (8, 8, 3, 0.5, 0.5, 1, 1, False, True, True),
    (8, 16, 3, 0.5, 0.5, 2, 1, True, True, True),
    (3, 8, 3, 0.0, 0.25, 1, 1, False, True, True),  # first layer
    (8, 6, 1, 0.75, 0.0, 2, 1, True, True, True),  # last layer
    (8, 8, 3, 0.5, 0.5, 1, 2, False, False, True),  # ablations
    (8, 8, 3, 0.5, 0.5, 2, 1, True, True, False),
    (8, 8, 5, 0.125, 0.5, 1, 1, False, False, False),
]


@pytest.mark.parametrize("size", [(16, 16), (33, 17), (7, 9)])
@pytest.mark.parametrize("case", CASES)
def test_fused_matches_reference_values_and_gradients(case, size):
    in_channels, out_channels, k, alpha_in, alpha_out, stride, dilation, bias, high_to_low, low_to_high = case
    conv = OctaveConv(in_channels, out_channels, k, alpha_in, alpha_out, stride, dilation * (k - 1) // 2, dilation, bias=bias,
                      high_to_low=high_to_low, low_to_high=low_to_high, impl="fused").double()  # fmt: skip
    x = pair(conv, 2, *size, dtype=torch.float64)
    x = tuple(None if t is None else t.requires_grad_() for t in x)
    fused = conv(x)
    reference = octave_conv2d_reference(*x, conv.weights(), conv.bias_h, conv.bias_l, stride, conv.padding, dilation)
    expected_size = [-(-s // stride) for s in size]
    assert list(fused[0].shape[-2:]) == expected_size
    outputs = [t for t in fused if t is not None]
    references = [t for t in reference if t is not None]
    assert len(outputs) == len(references) == (2 if conv.channels_out[1] else 1)
    for output, expected in zip(outputs, references):
        torch.testing.assert_close(output, expected)
    seeds = [torch.randn_like(output) for output in outputs]
    inputs = [t for t in (*x, *conv.parameters()) if t is not None]
    got = torch.autograd.grad(outputs, inputs, seeds, allow_unused=True)
    want = torch.autograd.grad(references, inputs, seeds, allow_unused=True)
    for first, second in zip(got, want):
        torch.testing.assert_close(first, second)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_strided_high_to_low_is_a_stride_2_convolution_of_the_high_map(impl):
    """Table 3's alternative: Y_L = f(X_L; W_LL) + f(X_H; W_HL, stride 2), the rest unchanged."""
    conv = OctaveConv(8, 12, 3, 0.25, 0.5, padding=1, bias=True, high_to_low_downsample="strided_conv", impl=impl)
    x_h, x_l = pair(conv, 2, 16, 12)
    y_h, y_l = conv((x_h, x_l))
    expected_l = F.conv2d(x_l, conv.weight_ll, conv.bias_l, padding=1) + F.conv2d(x_h, conv.weight_hl, stride=2, padding=1)
    torch.testing.assert_close(y_l, expected_l)
    pooled = OctaveConv(8, 12, 3, 0.25, 0.5, padding=1, bias=True, impl=impl)
    pooled.load_state_dict(conv.state_dict())
    pooled_h, pooled_l = pooled((x_h, x_l))
    torch.testing.assert_close(y_h, pooled_h)
    assert (y_l - pooled_l).abs().max() > 1e-2  # the two downsamplings differ


STRIDED_CASES = [  # (in, out, k, alpha_in, alpha_out, stride, bias)
    (8, 8, 3, 0.5, 0.5, 1, False),
    (8, 16, 3, 0.5, 0.5, 2, True),
    (3, 8, 3, 0.0, 0.25, 1, True),  # first layer: high->low is the low output's only path
    (8, 8, 1, 0.25, 0.5, 2, False),
]


@pytest.mark.parametrize("size", [(16, 16), (33, 17)])
@pytest.mark.parametrize("case", STRIDED_CASES)
def test_strided_high_to_low_fused_matches_reference_and_gradcheck(case, size):
    in_channels, out_channels, k, alpha_in, alpha_out, stride, bias = case
    options = dict(bias=bias, high_to_low_downsample="strided_conv")
    conv = OctaveConv(in_channels, out_channels, k, alpha_in, alpha_out, stride, (k - 1) // 2, impl="fused", **options).double()
    x = tuple(None if t is None else t.requires_grad_() for t in pair(conv, 2, *size, dtype=torch.float64))
    fused = [t for t in conv(x) if t is not None]
    reference = [t for t in octave_conv2d_reference(*x, conv.weights(), conv.bias_h, conv.bias_l, stride, conv.padding, 1,
                                                      "strided_conv") if t is not None]  # fmt: skip
    assert [list(t.shape[-2:]) for t in fused] == [list(t.shape[-2:]) for t in reference]
    assert list(fused[-1].shape[-2:]) == [-(-s // (2 * stride)) for s in size]
    for output, expected in zip(fused, reference):
        torch.testing.assert_close(output, expected)
    if size == (16, 16):
        names = [name for name, _ in conv.named_parameters()]

        def layer(x_h, x_l, *values):
            return tuple(t for t in torch.func.functional_call(conv, dict(zip(names, values)), ((x_h, x_l),)) if t is not None)

        assert torch.autograd.gradcheck(layer, (*x, *(p.detach().requires_grad_() for p in conv.parameters())))


def test_fused_path_keeps_channels_last():
    conv = OctaveConv(16, 16, 3, 0.5, 0.5, padding=1)
    x_h, x_l = pair(conv, 2, 16, 16)
    y = conv((x_h.contiguous(memory_format=torch.channels_last), x_l.contiguous(memory_format=torch.channels_last)))
    expected = conv((x_h, x_l))
    for output, reference in zip(y, expected):
        torch.testing.assert_close(output, reference)


@pytest.mark.parametrize("kernel_size, dilation, bias", [(1, 1, False), (3, 1, True), (3, 2, False), (5, 1, True)])
def test_alpha_zero_is_a_plain_conv2d_with_the_same_weights(kernel_size, dilation, bias):
    plain = nn.Conv2d(6, 10, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation, bias=bias)
    octave = OctaveConv.from_conv(plain, 0.0, 0.0)
    x = torch.randn(2, 6, 13, 10)
    y_h, y_l = octave(x)
    assert y_l is None
    torch.testing.assert_close(y_h, plain(x))
    assert sum(p.numel() for p in octave.parameters()) == sum(p.numel() for p in plain.parameters())


def test_alpha_zero_stride_two_pools_then_convolves():
    plain = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    octave = OctaveConv.from_conv(plain, 0.0, 0.0)
    octave.stride = 2
    x = torch.randn(1, 4, 11, 11)
    torch.testing.assert_close(octave(x)[0], plain(F.avg_pool2d(x, 2, ceil_mode=True)))


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (200, 200), (224, 224), (600, 1000)])
@pytest.mark.parametrize("stride", [1, 2])
def test_any_input_size(size, stride):
    first = OctaveConv(3, 4, 3, 0.0, 0.5, padding=1)
    middle = OctaveConv(4, 4, 3, 0.5, 0.5, stride=stride, padding=1)
    last = OctaveConv(4, 2, 1, 0.5, 0.0)
    with torch.no_grad():
        y_h, y_l = last(middle(first(torch.randn(1, 3, *size))))
    assert y_l is None and list(y_h.shape) == [1, 2, *(-(-s // stride) for s in size)]


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("alphas", [(0.0, 0.5), (0.5, 0.5), (0.25, 0.75), (0.5, 0.0)])
@pytest.mark.parametrize("bias", [False, True])
def test_parameter_count_equals_the_plain_convolution(groups, alphas, bias):
    octave = OctaveConv(16, 32, 3, *alphas, padding=1, groups=groups, bias=bias)
    plain = nn.Conv2d(16, 32, 3, padding=1, groups=groups, bias=bias)
    assert sum(p.numel() for p in octave.parameters()) == sum(p.numel() for p in plain.parameters())


def block_diagonal(weight: torch.Tensor, groups: int, in_channels: int) -> torch.Tensor:
    """The dense `(C_out, C_in, k, k)` weight of a grouped convolution's `(C_out, C_in / g, k, k)` weight."""
    out_channels, per_group = weight.shape[:2]
    dense = weight.new_zeros(out_channels, in_channels, *weight.shape[2:])
    rows = out_channels // groups
    for group in range(groups):
        dense[group * rows : (group + 1) * rows, group * per_group : (group + 1) * per_group] = weight[group * rows : (group + 1) * rows]
    return dense


def test_grouped_equals_dense_block_diagonal_paths():
    grouped = OctaveConv(16, 16, 3, 0.5, 0.25, padding=1, groups=4)
    x = pair(grouped, 2, 10, 10)
    dense = OctaveConv(16, 16, 3, 0.5, 0.25, padding=1)
    with torch.no_grad():
        for name in ("weight_hh", "weight_hl", "weight_lh", "weight_ll"):
            source = x[0] if name[-2] == "h" else x[1]
            getattr(dense, name).copy_(block_diagonal(getattr(grouped, name), 4, source.shape[1]))
    for output, expected in zip(grouped(x), dense(x)):
        torch.testing.assert_close(output, expected)


def test_depthwise_keeps_only_same_frequency_paths():
    conv = OctaveConv(8, 8, 3, 0.5, 0.5, padding=1, groups=8)
    assert conv.weight_hl is None and conv.weight_lh is None
    x_h, x_l = pair(conv, 1, 9, 9)
    y_h, y_l = conv((x_h, x_l))
    torch.testing.assert_close(y_h, F.conv2d(x_h, conv.weight_hh, padding=1, groups=4))
    torch.testing.assert_close(y_l, F.conv2d(x_l, conv.weight_ll, padding=1, groups=4))
    assert sum(p.numel() for p in conv.parameters()) == 8 * 9


@pytest.mark.parametrize("stride", [1, 2])
def test_multiply_accumulates_follow_the_paper(stride):
    """MACs = sum over paths of C_out_part * C_in_part * k^2 * (output pixels of that path)."""
    conv = OctaveConv(32, 64, 3, 0.5, 0.25, stride=stride, padding=1)
    x = pair(conv, 1, 32, 32)
    (high_in, low_in), (high_out, low_out) = conv.channels_in, conv.channels_out
    high_pixels = (32 // stride) ** 2
    expected = 9 * (high_out * high_in * high_pixels + low_out * high_in * high_pixels // 4 + low_out * low_in * high_pixels // 4
                    + high_out * low_in * (high_pixels if stride == 2 else high_pixels // 4))  # fmt: skip
    counter = FlopCounterMode(display=False)
    with counter:
        conv(x)
    assert counter.get_total_flops() // 2 == expected


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_gradcheck_float64(impl):
    conv = OctaveConv(4, 6, 3, 0.5, 0.5, stride=2, padding=1, bias=True, impl=impl).double()
    x_h, x_l = pair(conv, 1, 7, 5, dtype=torch.float64)
    parameters = list(conv.parameters())

    def layer(x_h, x_l, *weights):
        hh, hl, lh, ll, bias_h, bias_l = weights
        function = octave_conv2d if impl == "fused" else octave_conv2d_reference
        return function(x_h, x_l, (hh, hl, lh, ll), bias_h, bias_l, 2, 1, 1)

    inputs = (x_h.requires_grad_(), x_l.requires_grad_(), *(p.detach().requires_grad_() for p in parameters))
    assert torch.autograd.gradcheck(layer, inputs)
    conv_stride1 = OctaveConv(4, 6, 3, 0.25, 0.5, padding=1, impl=impl).double()
    for size in ((6, 8), (5, 7)):  # the exact-2x upsampling path and the cropped one
        x = tuple(t.requires_grad_() for t in pair(conv_stride1, 1, *size, dtype=torch.float64))
        assert torch.autograd.gradcheck(lambda x_h, x_l: conv_stride1((x_h, x_l)), x)


@pytest.mark.parametrize("low_size, memory_format", [((3, 4), torch.contiguous_format), ((3, 4), torch.channels_last), ((3, 3), torch.contiguous_format)])
def test_add_upsampled_values_and_gradcheck(low_size, memory_format):
    """The one-pass broadcast add with its hand-written backward (exact 2x) and the cropped path (odd)."""
    high = torch.randn(2, 3, *((5, 6) if low_size == (3, 3) else (6, 8)), dtype=torch.float64).contiguous(memory_format=memory_format)
    low = torch.randn(2, 3, *low_size, dtype=torch.float64).contiguous(memory_format=memory_format)
    expected = high + F.interpolate(low, scale_factor=2, mode="nearest")[..., : high.shape[-2], : high.shape[-1]]
    torch.testing.assert_close(add_upsampled(high, low), expected)
    assert torch.autograd.gradcheck(add_upsampled, (high.requires_grad_(), low.requires_grad_()))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(alpha_in=1.0), r"alpha_in=1.0 is not in \[0, 1\)"),
        (dict(alpha_out=-0.1), r"alpha_out=-0.1 is not in \[0, 1\)"),
        (dict(stride=3), "stride=3 is not 1 or 2"),
        (dict(padding=0), "padding=0 does not keep the size"),
        (dict(groups=3), "groups=3 must divide every part"),
        (dict(groups=8, alpha_out=0.25), "depthwise needs alpha_in == alpha_out"),
        (dict(impl="cuda"), "impl='cuda' is not one of"),
        (dict(impl="fused", groups=2), "impl='fused' needs groups=1"),
        (dict(alpha_in=0.0, high_to_low=False), "the low output needs the high_to_low path"),
        (dict(high_to_low_downsample="max_pool"), "high_to_low_downsample='max_pool' is not one of"),
    ],
)
def test_bad_arguments_fail_with_one_line(arguments, message):
    options = dict(in_channels=8, out_channels=8, kernel_size=3, padding=1) | arguments
    with pytest.raises(ValueError, match=message) as error:
        OctaveConv(**options)
    assert "\n" not in str(error.value)


def test_wrong_pair_for_the_layer_fails_clearly():
    conv = OctaveConv(8, 8, 3, 0.5, 0.5, padding=1)
    with pytest.raises(ValueError, match="alpha_in=0.5 expects x_l of 4 channels, got None"):
        conv(torch.randn(1, 8, 8, 8))
