"""Cityscapes datamodule and segmentation task on a miniature Cityscapes written by the tests."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import datasets.cityscapes as cityscapes
from datasets.cityscapes import CLASS_NAMES, IGNORE_INDEX, LABEL_ID_TO_TRAIN_ID, PALETTE, CityscapesDataModule
from engine.cli import choices_of, compose
from engine.experiment import check_net_fits_data
from engine.tasks import SegmentationTask
from engine.tasks.segmentation import colorize
from tests.framework.fabricate import make_cityscapes_tree

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
SGD = partial(torch.optim.SGD, lr=0.01)


def make_datamodule(root, **overrides) -> CityscapesDataModule:
    arguments = {"batch_size": 2, "num_workers": 0, "num_classes": 19, "in_channels": 3, "input_size": [16, 32], "val_fraction": 1 / 3}
    return CityscapesDataModule(root=str(root), **{**arguments, **overrides})


def classes_shown_in(image: torch.Tensor) -> torch.Tensor:
    """Invert the fabricated images: standardised `(3, H, W)` -> train ids `(H, W)` of the nearest palette colour."""
    rgb = ((image * STD + MEAN) * 255).permute(1, 2, 0)
    colors = torch.cat([PALETTE.float(), torch.zeros(1, 3)])  # black: ignored
    nearest = torch.cdist(rgb.reshape(-1, 3), colors).argmin(dim=1).reshape(rgb.shape[:2])
    return torch.where(nearest == len(PALETTE), IGNORE_INDEX, nearest)


# --- label mapping, loading, errors ------------------------------------------------------
def test_label_ids_map_to_the_official_train_ids():
    assert LABEL_ID_TO_TRAIN_ID.shape == (256,) and LABEL_ID_TO_TRAIN_ID.dtype == torch.uint8
    known = {7: 0, 8: 1, 11: 2, 23: 10, 24: 11, 26: 13, 33: 18, 0: 255, 1: 255, 9: 255, 29: 255, 30: 255, 255: 255}
    for label_id, train_id in known.items():
        assert LABEL_ID_TO_TRAIN_ID[label_id] == train_id, label_id
    assert sorted(LABEL_ID_TO_TRAIN_ID[LABEL_ID_TO_TRAIN_ID != 255].tolist()) == list(range(19))
    assert CLASS_NAMES[0] == "road" and CLASS_NAMES[13] == "car" and len(CLASS_NAMES) == 19
    assert PALETTE.shape == (19, 3) and PALETTE[0].tolist() == [128, 64, 128]


def test_frames_pair_by_name_and_labels_become_train_ids(tmp_path):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path)
    datamodule.setup("fit")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (4, 2, 6)
    image_path, label_path = datamodule.test_set.base.frames[4]
    assert image_path.name.replace("leftImg8bit", "gtFine_labelIds") == label_path.name
    assert image_path.parent.name == label_path.parent.name == "bremen"
    image, mask = datamodule.test_set[4]  # evaluation: full resolution, no augmentation
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert mask.shape == (32, 64) and mask.dtype == torch.int64
    label_ids = torch.from_numpy(np.array(Image.open(folder / "gtFine" / "val" / "bremen" / label_path.name)))
    assert torch.equal(mask, LABEL_ID_TO_TRAIN_ID[label_ids.long()].long())
    assert torch.equal(classes_shown_in(image), mask)


def test_eval_size_resizes_images_and_labels(tmp_path):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path, eval_size=[16, 32])
    datamodule.setup("fit")
    image, mask = datamodule.test_set[0]
    assert image.shape == (3, 16, 32) and mask.shape == (16, 32)
    assert set(mask.unique().tolist()) <= set(range(19)) | {255}  # nearest: no blended labels


@pytest.mark.parametrize("rotation, scale", [(0.0, 0.0), (7.5, 0.12)])
def test_augmentation_moves_image_and_mask_together(tmp_path, rotation, scale):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path, input_size=[24, 48], max_rotation=rotation, max_scale_change=scale, flip_probability=0.5)
    datamodule.setup("fit")
    for seed in range(6):
        image, mask = datamodule.train_set[(seed % 4, seed)]
        assert image.shape == (3, 24, 48) and mask.shape == (24, 48)
        shown = classes_shown_in(image)
        if rotation == 0.0:
            assert torch.equal(shown, mask)  # flips and crops move whole pixels
        else:  # bilinear images blend at class borders: compare inside uniform 3x3 neighbourhoods
            labelled = (mask != IGNORE_INDEX).float()[None, None]
            neighbours = nn.functional.max_pool2d(mask[None, None].float(), 3, 1, 1) == -nn.functional.max_pool2d(-mask[None, None].float(), 3, 1, 1)
            inside = (neighbours & (nn.functional.avg_pool2d(labelled, 3, 1, 1) == 1))[0, 0]
            assert inside.sum() > 100 and (shown[inside] == mask[inside]).float().mean() > 0.99


def test_crops_larger_than_the_frame_pad_the_mask_with_ignore(tmp_path):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path, input_size=[40, 80], max_rotation=0.0, max_scale_change=0.0)
    datamodule.setup("fit")
    _, mask = datamodule.train_set[(0, 0)]
    assert mask.shape == (40, 80)
    assert (mask == IGNORE_INDEX).sum() >= 40 * 80 - 32 * 64


def test_missing_folder_says_where_the_files_go_and_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        make_datamodule(tmp_path).setup("fit")
    message = str(error.value)
    assert f"{tmp_path}/cityscapes/leftImg8bit/train" in message
    for hint in ("https://www.cityscapes-dataset.com", "leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip", "registration"):
        assert hint in message


def test_image_without_label_file_is_named(tmp_path):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3)
    missing = folder / "gtFine" / "train" / "aachen" / f"aachen_000001_000019{cityscapes.LABEL_SUFFIX}"
    missing.unlink()
    with pytest.raises(ValueError, match=rf"aachen_000001_000019_leftImg8bit.png has no label file: expected {missing}"):
        make_datamodule(tmp_path).setup("fit")


@pytest.mark.parametrize("damaged", ["image", "label"])
def test_corrupt_png_is_named(tmp_path, damaged):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3)
    frame = "bremen_000002_000019"
    if damaged == "image":
        path = folder / "leftImg8bit" / "val" / "bremen" / f"{frame}{cityscapes.IMAGE_SUFFIX}"
        path.write_bytes(b"not a png at all")
    else:
        path = folder / "gtFine" / "val" / "bremen" / f"{frame}{cityscapes.LABEL_SUFFIX}"
        path.write_bytes(path.read_bytes()[:-30])  # truncated
    datamodule = make_datamodule(tmp_path)
    datamodule.setup("fit")
    with pytest.raises(ValueError, match=rf"corrupt or unreadable Cityscapes file {path}"):
        datamodule.test_set[5]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_classes": 20}, "dataset.num_classes=20 must be 19"),
        ({"in_channels": 1}, "dataset.in_channels=1 must be 3"),
        ({"input_size": [16]}, r"dataset.input_size=\[16\] must be \[height, width\]"),
        ({"eval_size": [0, 4]}, r"dataset.eval_size=\[0, 4\] must be \[height, width\]"),
        ({"max_scale_change": 1.0}, r"dataset.max_scale_change=1.0 must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_datamodule(tmp_path, **overrides)


# --- class weights -----------------------------------------------------------------------
def fixed_labels(split: str, city: str, index: int) -> np.ndarray:
    """8 x 16 label ids: 32 unlabeled, 64 road, 16 car, 16 sidewalk pixels."""
    labels = np.full((8, 16), 7, dtype=np.uint8)
    labels[:2] = 0
    labels[6:, :8] = 26
    labels[6:, 8:] = 8
    return labels


def test_class_weights_by_hand_and_over_the_training_split_only(tmp_path):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3, size=(8, 16), label_ids=fixed_labels)
    weights = make_datamodule(tmp_path).class_weights()
    expected = torch.full((19,), 1 / math.log(1.1))
    expected[0] = 1 / math.log(1.1 + 64 / 96)  # road
    expected[1] = expected[13] = 1 / math.log(1.1 + 16 / 96)  # sidewalk, car
    torch.testing.assert_close(weights, expected)
    (cache,) = (folder / ".farconv_cache").glob("class_pixels_*.pt")
    counts = torch.load(cache, weights_only=True)
    assert counts[0] == 4 * 64 and counts.sum() == 4 * 96  # 6 frames, 2 held out for validation


def test_class_weights_are_cached_once_and_reused(tmp_path, monkeypatch):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3, size=(8, 16))
    first = make_datamodule(tmp_path).class_weights()
    assert len(list((folder / ".farconv_cache").glob("class_pixels_*.pt"))) == 1

    def no_scan(label_files):
        raise AssertionError("rescanned the label files despite the cache")

    monkeypatch.setattr(cityscapes, "count_class_pixels", no_scan)
    torch.testing.assert_close(make_datamodule(tmp_path).class_weights(), first)
    with pytest.raises(AssertionError, match="rescanned"):  # another split: other files, another cache entry
        make_datamodule(tmp_path, val_fraction=0.5).class_weights()


def test_class_weights_cache_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    folder = make_cityscapes_tree(tmp_path, images_per_city=3, size=(8, 16))
    (folder / ".farconv_cache").write_text("a file where the cache folder should be: nothing can be written there")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = make_datamodule(tmp_path).class_weights()
    assert len(list((tmp_path / "xdg" / "farconv" / "cityscapes").glob("class_pixels_*.pt"))) == 1
    monkeypatch.setattr(cityscapes, "count_class_pixels", lambda label_files: pytest.fail("rescanned"))
    torch.testing.assert_close(make_datamodule(tmp_path).class_weights(), first)


# --- metrics through the task -------------------------------------------------------------
def validate(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int = 3) -> dict[str, float]:
    """Validation metrics of `predictions` `(N, H, W)` for `targets`, one image per batch.

    The net is the identity and the inputs are one-hot logits of the predictions, so the
    task's own validation_step and epoch end compute the metrics.
    """
    logits = nn.functional.one_hot(predictions, num_classes).permute(0, 3, 1, 2).float()
    task = SegmentationTask(num_classes=num_classes, use_class_weights=False, net=nn.Identity(), optimizer=SGD)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.validate(task, DataLoader(TensorDataset(logits, targets), batch_size=1), verbose=False)
    return results


WRONG_TARGET = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
WRONG_PREDICTION = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
# Confusion (rows: truth) of the 7 labelled pixels: [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
# IoU = 2 / (3 + 3 - 2), 2 / (2 + 3 - 2), 1 / (2 + 1 - 1) = 1/2, 2/3, 1/2.


def test_miou_of_a_perfect_prediction_is_one():
    target = torch.tensor([[[0, 1, 2, 255], [2, 1, 0, 0]]])
    results = validate(target, target.clamp(max=2))
    assert results["val/miou"] == pytest.approx(1.0) and results["val/pixel_acc"] == pytest.approx(1.0)


def test_miou_of_a_wrong_prediction_matches_the_hand_computed_one():
    results = validate(WRONG_TARGET[None], WRONG_PREDICTION[None])
    assert results["val/miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert results["val/pixel_acc"] == pytest.approx(5 / 7)  # the ignored pixel counts neither way
    assert results["val/iou/1"] == pytest.approx(2 / 3)


def test_miou_comes_from_the_epoch_confusion_matrix_not_a_mean_over_batches():
    all_zero = torch.zeros(2, 4, dtype=torch.long)  # a second batch predicted perfectly: class 0 only
    results = validate(torch.stack([WRONG_TARGET, all_zero]), torch.stack([WRONG_PREDICTION, all_zero]))
    # epoch confusion [[10, 1, 0], [0, 2, 0], [1, 0, 1]]; the batch mean would be (0.5556 + 1) / 2
    assert results["val/miou"] == pytest.approx((10 / 12 + 2 / 3 + 1 / 2) / 3)


def test_colorize_uses_the_palette_and_paints_ignored_pixels_black():
    colors = colorize(torch.tensor([[0, 13, 255]]), PALETTE)
    assert colors.shape == (3, 1, 3) and colors.dtype == torch.uint8
    assert colors[:, 0, 0].tolist() == PALETTE[0].tolist() and colors[:, 0, 1].tolist() == [0, 0, 142]
    assert colors[:, 0, 2].tolist() == [0, 0, 0]


# --- training ----------------------------------------------------------------------------
def tiny_fcn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 19, 1))


def test_fast_dev_run_trains_on_the_fabricated_tree(tmp_path):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path)
    task = SegmentationTask(num_classes=19, net=tiny_fcn(), optimizer=SGD, monitor="val/miou", monitor_mode="max")
    assert task.expected_output_shape(2, (16, 32)) == (2, 19, 16, 32)
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(task, datamodule=datamodule)
    torch.testing.assert_close(task.class_weights, datamodule.class_weights())
    assert "class_weights" not in task.state_dict()  # recomputed from the data, not checkpointed
    metrics = trainer.callback_metrics
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["val/miou"] <= 1.0
    assert task.class_names == list(CLASS_NAMES)


class ImageRecorder(Logger):
    """A logger that keeps what `log_image` receives."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []

    name, version = "recorder", 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.images.append({"key": key, "images": images, "step": step, **kwargs})


def test_validation_sends_prediction_panels_to_loggers_that_take_images(tmp_path):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    datamodule = make_datamodule(tmp_path)
    task = SegmentationTask(num_classes=19, overlays=1, net=tiny_fcn(), optimizer=SGD)
    recorder = ImageRecorder()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu",
        logger=[recorder, CSVLogger(tmp_path / "csv")], enable_checkpointing=False, enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(task, datamodule=datamodule)
    (logged,) = recorder.images
    (panel,) = logged["images"]
    assert logged["key"] == "val/predictions" and panel.shape == (32, 3 * 64, 3) and panel.dtype == np.uint8
    _, mask = datamodule.val_set[0]
    assert np.array_equal(panel[:, 64:128], colorize(mask, PALETTE).permute(1, 2, 0).numpy())


def test_cityscapes_config_selects_the_segmentation_task_and_fits_enet(tmp_path):
    make_cityscapes_tree(tmp_path, images_per_city=3)
    overrides = ["dataset=cityscapes", "net=enet", f"paths.data={tmp_path}", "dataset.input_size=[32,64]", "dataset.num_workers=0"]
    cfg = compose(overrides)
    assert cfg.task._target_ == "engine.tasks.SegmentationTask" and cfg.task.monitor == "val/miou"
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    task = instantiate(cfg.task, net=instantiate(cfg.net), optimizer=instantiate(cfg.optimizer), scheduler=None)
    check_net_fits_data(task, cfg, choices_of(cfg))
