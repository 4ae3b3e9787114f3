"""Pictures of masks and kernels, and the callback that saves them during training."""

from __future__ import annotations

import pytest

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from layers.flexconv import CKConv2d, FlexConv1d, FlexConv2d
from layers.flexconv.visualize import draw_kernels, full_kernel_and_mask
from tests.conftest import QUICK


def test_full_kernel_is_zero_outside_the_crop_and_the_mask_peaks_at_its_mean():
    layer = FlexConv2d(2, 3, 33)
    kernel, mask, windows = full_kernel_and_mask(layer, (32, 32))
    assert kernel.shape == (3, 2, 33, 33) and mask.shape == (33, 33)
    assert windows == [(13, 20), (13, 20)]
    assert kernel[..., :13, :].abs().max() == 0 and kernel[..., 13:20, 13:20].abs().max() > 0
    assert mask[16, 16] == pytest.approx(1.0)
    assert layer.mask_dynamic_cropping  # restored


@pytest.mark.parametrize("layer", [FlexConv2d(2, 3, 9), CKConv2d(2, 2, 7), FlexConv1d(1, 4, 21)])
def test_draw_kernels(layer):
    figure = draw_kernels(layer, max_kernels=3, title="blocks.0")
    expected_panels = 3 + isinstance(layer, (FlexConv1d, FlexConv2d))
    assert len(figure.axes) == expected_panels
    assert figure.get_suptitle().startswith("blocks.0: ")


def test_draw_kernels_needs_a_grid():
    with pytest.raises(ValueError, match="pass input_size"):
        draw_kernels(FlexConv1d(1, 1))
    assert draw_kernels(FlexConv1d(1, 1), input_size=(30,)) is not None


def test_callback_saves_a_picture_per_layer_and_epoch(tmp_path):
    overrides = ["net=flextcn2", "dataset=mnist1d", "dataset.num_samples=200", "conv=flex", "callbacks=flexconv_visualization",
                 "callbacks.flexconv_visualization.max_layers=2", "train.epochs=1", "+trainer.limit_train_batches=2",
                 "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]  # fmt: skip
    cfg = compose([*QUICK, f"paths.runs={tmp_path / 'runs'}", f"paths.data={tmp_path / 'data'}", *overrides])
    build_experiment(cfg, tmp_path / "run", choices_of(cfg)).run()
    pictures = sorted(path.name for path in (tmp_path / "run" / "kernels").glob("*.png"))
    assert pictures == ["net.blocks.0.conv1_epoch000.png", "net.blocks.0.conv2_epoch000.png"]
