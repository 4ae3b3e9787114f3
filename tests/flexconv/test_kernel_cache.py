"""What a FlexConv/CKConv layer keeps between forwards: the kernel in eval mode without
autograd (dropped when a parameter, buffer, setting, input size, dtype or the mode changes)
and the positions of a crop."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from layers.flexconv import CKConv1d, FlexConv2d, MAGNet
from layers.flexconv.grid import PositionGrid

SMALL_MAGNET = partial(MAGNet, hidden_channels=8, num_layers=2)


def counting(layer):
    """The layer, with a list that records every kernel it generates."""
    calls = []
    generate = layer.generate_kernel

    def recorded(*args, **kwargs):
        calls.append(args[0])
        return generate(*args, **kwargs)

    layer.generate_kernel = recorded
    return layer, calls


def fresh_output(layer, x):
    """The output of an identical layer that has never cached anything."""
    twin = type(layer)(layer.in_channels, layer.out_channels, layer.horizon, kernel_net=SMALL_MAGNET).to(x.dtype)
    twin.load_state_dict(layer.state_dict())
    twin.mask_threshold = getattr(layer, "mask_threshold", None)
    with torch.no_grad():
        return twin.eval()(x)


def test_eval_without_grad_reuses_the_kernel_and_gives_the_same_output():
    torch.manual_seed(0)
    layer, calls = counting(FlexConv2d(3, 4, 9, kernel_net=SMALL_MAGNET).eval())
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        first, second = layer(x), layer(x)
    assert len(calls) == 1 and torch.equal(first, second)
    assert torch.allclose(second, fresh_output(layer, x), atol=1e-6)
    assert layer.kernel_size is not None and layer.grid_size == (9, 9)


@pytest.mark.parametrize(
    "change",
    [
        lambda layer: layer.kernel_net.output.weight.add_(0.1),  # an optimiser step on the kernel network
        lambda layer: layer.mask_sigma.mul_(2.0),  # the mask widens: another crop
        lambda layer: layer.bias.sub_(1.0),
        lambda layer: layer.sampling_rate_norm.fill_(0.5),  # a buffer
        lambda layer: layer.load_state_dict({k: v + 0.01 if v.is_floating_point() else v for k, v in layer.state_dict().items()}),
        lambda layer: setattr(layer, "mask_threshold", 0.5),  # a setting
    ],
)
def test_a_changed_parameter_buffer_or_setting_regenerates_the_kernel(change):
    torch.manual_seed(1)
    layer, calls = counting(FlexConv2d(3, 4, 9, kernel_net=SMALL_MAGNET).eval())
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        layer.mask_sigma.fill_(0.3)  # a 7x7 crop at threshold 0.1, 5x5 at 0.5
        before = layer(x)
        change(layer)
        after = layer(x)
    assert len(calls) == 2 and not torch.allclose(before, after)
    assert torch.allclose(after, fresh_output(layer, x), atol=1e-6)


def test_training_mode_and_autograd_always_generate_and_drop_the_cache():
    torch.manual_seed(2)
    layer, calls = counting(FlexConv2d(3, 4, 9, kernel_net=SMALL_MAGNET))
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        layer.eval()(x)
        layer.train()(x)
        layer(x)
    assert len(calls) == 3 and layer._kernel_cache is None
    layer.eval()
    out = layer(x)  # autograd on: the kernel must carry its graph
    out.sum().backward()
    assert len(calls) == 4 and layer.kernel_net.output.weight.grad is not None and layer._kernel_cache is None


def test_another_input_size_or_dtype_regenerates_the_kernel():
    torch.manual_seed(3)
    layer, calls = counting(CKConv1d(2, 3, "same", kernel_net=SMALL_MAGNET).eval())
    with torch.no_grad():
        layer(torch.randn(1, 2, 20))
        layer(torch.randn(1, 2, 20))
        layer(torch.randn(1, 2, 30))
        assert layer.grid_size == (30,)
        layer(torch.randn(1, 2, 20))
        assert layer.grid_size == (20,)
        layer.double()(torch.randn(1, 2, 20, dtype=torch.float64))
    assert calls == [(20,), (30,), (20,), (20,)]  # 20 twice in a row: cached


def test_positions_of_an_unchanged_crop_are_not_rebuilt():
    grid = PositionGrid()
    axis = grid.axis(9, torch.device("cpu"), torch.float32)
    first = grid.positions([axis[2:7], axis[1:8]])
    assert grid.positions([axis[2:7], axis[1:8]]) is first
    other = grid.positions([axis[1:8], axis[1:8]])
    assert other is not first and other.shape == (49, 2)
    expected = torch.stack(torch.meshgrid(axis[2:7], axis[1:8], indexing="ij"), -1).reshape(-1, 2)
    assert torch.equal(first, expected)
