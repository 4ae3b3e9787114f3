"""The box-convolution experiments: the single-box-conv MNIST net, pictures of the boxes
(`draw_boxes` and the `BoxVisualization` callback), and the `box_mnist` and
`box_cityscapes` experiment configs."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from pytorch_lightning.loggers import Logger
from torch import nn

from engine.cli import choices_of, compose
from engine.config import validate
from engine.experiment import build_experiment
from engine.loggers import RunContext
from engine.visualization import BoxVisualization
from layers.box import BoxConv2d
from layers.box.visualize import draw_boxes
from models.box_mnist import BoxMNIST
from tests.conftest import QUICK

CITYSCAPES_NETS = ["enet", "boxenet", "boxonlyenet", "enet_minus", "erfnet", "boxerfnet"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_mnist(root: Path, train_images: int = 80, test_images: int = 20, seed: int = 0) -> Path:
    """Random digits in MNIST's idx files under `<root>/MNIST/raw/`; labels cycle through 0-9."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train_images), ("t10k", test_images)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, count) + labels.tobytes())
    return root


@pytest.fixture(scope="module")
def fabricated_mnist(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("data"))


class ImageRecordingLogger(Logger):
    """Records what is sent to `log_image`, the method W&B's logger has."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, list[str], int | None]] = []

    @property
    def name(self) -> str:
        return "images"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_image(self, key: str, images: list[str], step: int | None = None, **kwargs) -> None:
        self.images.append((key, list(images), step))


def image_recording_logger(context: RunContext) -> ImageRecordingLogger:
    """The `logger/` factory of `ImageRecordingLogger` (the test selects it with `+logger.images._target_=...`)."""
    return ImageRecordingLogger()


def build(overrides: list[str], tmp_path: Path, data: Path):
    cfg = compose([*QUICK, f"paths.data={data}", f"paths.runs={tmp_path / 'runs'}", *overrides])
    return build_experiment(cfg, tmp_path / "run", choices_of(cfg))


# The single-box-conv MNIST net


def test_box_mnist_maps_digits_to_logits():
    assert BoxMNIST(1, 10, [28, 28])(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_box_mnist_has_the_reference_layer_sizes():
    net = BoxMNIST(1, 10, [28, 28])
    assert (net.box.in_planes, net.box.num_filters, net.box.max_input_h, net.box.max_input_w) == (1, 40, 28, 28)
    assert sum(p.numel() for p in net.box.parameters()) == 4 * 40  # x_min, x_max, y_min, y_max per box
    assert sum(p.numel() for p in net.mix.parameters()) == 40 * 40 + 40
    assert sum(p.numel() for p in net.classifier.parameters()) == 7 * 7 * 40 * 10 + 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_size": [28]}, r"box_mnist: input_size=\[28\] must be \[height, width\]"),
        ({"input_size": [28, 28], "pool_size": 30}, r"box_mnist: pool_size=30 must be in \[1, 28\]"),
    ],
)
def test_box_mnist_rejects_impossible_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BoxMNIST(1, 10, **kwargs)


def test_box_mnist_experiment_trains_on_fabricated_digits(tmp_path, fabricated_mnist):
    metrics = build(["experiment=box_mnist", "train.batch_size=16", "+trainer.fast_dev_run=true"], tmp_path, fabricated_mnist).run()
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_box_mnist_experiment_trains_on_real_digits(tmp_path, shared_mnist):
    metrics = build(["experiment=box_mnist", "+trainer.fast_dev_run=true"], tmp_path, shared_mnist).run()
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_box_mnist_experiment_is_the_documented_recipe():
    cfg = compose(["experiment=box_mnist"])
    choices = choices_of(cfg)
    assert (choices["net"], choices["dataset"], choices["optimizer"], choices["callbacks"]) == ("box_mnist", "mnist", "adam", "box_visualization")
    assert cfg.train.weight_decay == 0.0
    validate(cfg, choices)


# draw_boxes


def test_draw_boxes_draws_one_rectangle_per_box_over_an_image():
    layer = BoxConv2d(1, 40, 28, 28)
    figure = draw_boxes(layer, torch.rand(1, 28, 28))
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].patches) == 40
    assert figure.axes[0].images[0].get_array().shape == (28, 28)


def test_draw_boxes_without_an_image_uses_a_canvas_of_the_max_input_size():
    layer = BoxConv2d(3, 4, 12, 20)
    figure = draw_boxes(layer, channels=[0, 2])
    assert len(figure.axes[0].patches) == 2 * 4
    assert figure.axes[0].images[0].get_array().shape == (12, 20)


def test_draw_boxes_places_each_box_relative_to_the_centre_pixel():
    layer = BoxConv2d(1, 1, 9, 9)
    layer.set_box_coordinates(torch.tensor([[-2.0]]), torch.tensor([[3.0]]), torch.tensor([[-1.0]]), torch.tensor([[1.0]]))
    (rectangle,) = draw_boxes(layer, torch.rand(9, 9)).axes[0].patches
    assert isinstance(rectangle, Rectangle)
    # rows [4 - 2, 4 + 3 + 1) and columns [4 - 1, 4 + 1 + 1), pixel p spanning [p - 0.5, p + 0.5]
    assert rectangle.get_xy() == pytest.approx((2.5, 1.5))
    assert (rectangle.get_width(), rectangle.get_height()) == pytest.approx((3.0, 6.0))


def test_draw_boxes_draws_into_given_axes():
    figure = Figure()
    ax = figure.add_subplot()
    assert draw_boxes(BoxConv2d(1, 3, 8, 8), ax=ax) is figure and len(ax.patches) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": [1]}, r"channels=\[1\] must be a non-empty list of channels in \[0, 1\)"),
        ({"image": torch.rand(1, 1, 8, 8)}, r"image of shape \(1, 1, 8, 8\) must be \(C, H, W\) or \(H, W\)"),
    ],
)
def test_draw_boxes_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw_boxes(BoxConv2d(1, 3, 8, 8), **kwargs)


# The BoxVisualization callback


def test_box_visualization_saves_and_logs_pictures(tmp_path, fabricated_mnist):
    overrides = [
        "net=box_mnist", "dataset=mnist", "callbacks=box_visualization", "callbacks.box_visualization.every_n_epochs=2",
        f"+logger.images._target_={__name__}.image_recording_logger",
        "train.epochs=3", "train.batch_size=16", "trainer.log_every_n_steps=1",
        "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
    ]  # fmt: skip
    experiment = build(overrides, tmp_path, fabricated_mnist)
    experiment.run()
    boxes = tmp_path / "run" / "boxes"
    # epoch 1 by every_n_epochs=2, epoch 2 at the end of training; none in the sanity check
    assert sorted(path.name for path in boxes.iterdir()) == ["net.box_epoch001.png", "net.box_epoch002.png"]
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in boxes.iterdir())
    (logger,) = [logger for logger in experiment.trainer.loggers if isinstance(logger, ImageRecordingLogger)]
    assert [(key, images) for key, images, _ in logger.images] == [
        ("boxes/net.box", [str(boxes / "net.box_epoch001.png")]),
        ("boxes/net.box", [str(boxes / "net.box_epoch002.png")]),
    ]


def test_box_visualization_draws_the_first_max_layers_over_the_input_resized_to_each(tmp_path):
    net = nn.Sequential(BoxConv2d(3, 2, 16, 16), BoxConv2d(6, 2, 8, 8), BoxConv2d(12, 2, 4, 4))
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], global_step=0)
    callback = BoxVisualization(max_layers=2)
    callback.on_validation_batch_start(trainer, net, (torch.rand(2, 3, 16, 16), torch.zeros(2)), batch_idx=0)
    callback.draw(trainer, net, epoch=7)
    assert sorted(path.name for path in (tmp_path / "boxes").iterdir()) == ["0_epoch007.png", "1_epoch007.png"]


# box_cityscapes


@pytest.mark.parametrize("net", CITYSCAPES_NETS)
def test_box_cityscapes_composes_the_authors_recipe(net):
    cfg = compose(["experiment=box_cityscapes", f"net={net}"])
    choices = choices_of(cfg)
    validate(cfg, choices)
    assert choices["net"] == net and choices["task"] == "segmentation"
    assert (choices["optimizer"], choices["scheduler"], choices["trainer"], choices["logger"]) == ("adam", "multistep", "gpu", "wandb")
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size, cfg.train.epochs) == (1e-3, 2e-4, 12, 1300)
    assert list(cfg.dataset.train_resize) == list(cfg.dataset.eval_size) == [512, 1024]


def test_box_cityscapes_decays_the_rate_in_the_same_epochs_as_the_authors():
    cfg = compose(["experiment=box_cityscapes"])
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    schedule = instantiate(cfg.scheduler)(optimizer, total_steps=1300, steps_per_epoch=1)
    authors_decay_epochs = torch.tensor([600, 780, 880, 960, 1040, 1120, 1200, 1260])
    for epoch in range(1300):
        expected = 0.45 ** (epoch > authors_decay_epochs).sum().item()  # examples/Cityscapes/train.py
        assert schedule.lr_lambdas[0](epoch) == pytest.approx(expected), epoch
