"""Semantic segmentation: images `(B, C, H, W)` -> per-pixel logits `(B, K, H, W)`."""

from __future__ import annotations

from typing import Sized

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from engine.tasks.base import TaskModule

Batch = tuple[Tensor, Tensor]


def iou_per_class(confusion: Tensor) -> Tensor:
    """float64 `(K,)` intersection over union of each class from a `(K, K)` confusion matrix
    (rows: true class, columns: predicted class); NaN for a class neither present nor predicted."""
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - true_positives
    return true_positives / union


def colorize(labels: Tensor, palette: Tensor) -> Tensor:
    """Class indices `(H, W)` -> uint8 RGB `(3, H, W)`; indices outside the palette `(K, 3)` (ignored pixels) are black."""
    num_classes = len(palette)
    colors = torch.cat([palette.to(torch.uint8), palette.new_zeros(1, 3, dtype=torch.uint8)])
    known = (labels >= 0) & (labels < num_classes)
    return colors[torch.where(known, labels, num_classes)].permute(2, 0, 1)


def to_displayable(image: Tensor) -> Tensor:
    """A standardised image `(C, H, W)` -> uint8 RGB `(3, H, W)` stretched to the full range
    (the first three channels, or the first one as grey)."""
    image = image[:3] if len(image) >= 3 else image[:1].expand(3, -1, -1)
    low, high = image.min(), image.max()
    return ((image - low) / (high - low).clamp(min=1e-8) * 255).round().to(torch.uint8)


def prediction_panel(image: Tensor, target: Tensor, prediction: Tensor, palette: Tensor) -> Tensor:
    """uint8 `(3, H, 3 W)`: the image, the ground truth and the prediction side by side."""
    return torch.cat([to_displayable(image), colorize(target, palette), colorize(prediction, palette)], dim=-1)


class SegmentationTask(TaskModule):
    """Per-pixel cross-entropy, class-weighted when the datamodule provides weights.

    Metrics come from a confusion matrix accumulated over the whole epoch, so the mean IoU
    is that of the dataset (not an average over batches); pixels labelled `ignore_index`
    count neither in the loss nor in the metrics. Logs `{train,val,test}/loss`, `/miou` and
    `/pixel_acc`, the IoU of every class as `{val,test}/iou/<class name>`, and at the end of
    each validation `overlays` panels (image | ground truth | prediction) from its first batch
    to every logger that can take images (`log_image`, e.g. W&B). The mean IoU skips classes
    absent from both the labels and the predictions, as the official Cityscapes evaluation does.

    From the datamodule, when it has them: `class_weights()` (float `(K,)`), `class_names`
    (`K` names; else the class indices) and `palette` (uint8 `(K, 3)` RGB colours; else
    fixed random colours).

    Args:
        num_classes: number of classes `K`; the net maps `(B, C, H, W)` to `(B, K, H, W)`.
        ignore_index: target value of unlabelled pixels.
        use_class_weights: weight the loss by the datamodule's `class_weights()`.
        overlays: prediction panels logged per validation (0 disables them).
        **kwargs: `TaskModule` arguments (net, optimizer, scheduler, ...).
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, use_class_weights: bool = True, overlays: int = 4, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"task: num_classes={num_classes} must be >= 2")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"task.ignore_index={ignore_index} is a class index; it must lie outside [0, {num_classes})")
        if overlays < 0:
            raise ValueError(f"task.overlays={overlays} must be >= 0")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.use_class_weights = use_class_weights
        self.overlays = overlays
        self.class_names: list[str] = [str(index) for index in range(num_classes)]
        self.palette = torch.randint(0, 256, (num_classes, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        self.register_buffer("class_weights", None, persistent=False)  # recomputed from the data in setup()
        self.train_confusion, self.val_confusion, self.test_confusion = (
            MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index) for _ in range(3)
        )
        self._overlay_batch: tuple[Tensor, Tensor, Tensor] | None = None

    def expected_output_shape(self, batch_size: int, input_size: tuple[int, ...]) -> tuple[int, ...]:
        return (batch_size, self.num_classes, *input_size)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "class_names", None) is not None:
            self._check_per_class(datamodule.class_names, "class_names")
            self.class_names = list(datamodule.class_names)
        if getattr(datamodule, "palette", None) is not None:
            self.palette = torch.as_tensor(datamodule.palette, dtype=torch.uint8)
            if self.palette.shape != (self.num_classes, 3):
                raise ValueError(f"datamodule palette is {tuple(self.palette.shape)}, expected ({self.num_classes}, 3) RGB")
        if not self.use_class_weights:
            return
        if not hasattr(datamodule, "class_weights"):
            source = type(datamodule).__name__ if datamodule is not None else "the trainer's data (no datamodule)"
            rank_zero_warn(f"task.use_class_weights=true but {source} provides no class_weights(); the loss is unweighted")
            return
        weights = torch.as_tensor(datamodule.class_weights(), dtype=torch.float32)
        self._check_per_class(weights, "class_weights()")
        self.class_weights = weights.to(self.device)

    def _check_per_class(self, values: Sized, source: str) -> None:
        if len(values) != self.num_classes:
            raise ValueError(f"datamodule {source} has {len(values)} entries but task.num_classes={self.num_classes}")

    # --- steps ---------------------------------------------------------------------------
    def _shared_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        """Loss and predicted classes `(B, H, W)` of a batch `(images (B, C, H, W), targets (B, H, W))`."""
        images, targets = batch
        logits = self(images)
        loss = F.cross_entropy(logits, targets, weight=self.class_weights, ignore_index=self.ignore_index)
        predictions = logits.detach().argmax(dim=1)
        getattr(self, f"{stage}_confusion").update(predictions, targets)
        training = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=training, on_epoch=True, prog_bar=True, batch_size=len(images), sync_dist=not training)
        return loss, predictions

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self.with_auxiliary_loss(self._shared_step(batch, "train")[0], len(batch[0]))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, predictions = self._shared_step(batch, "val")
        if batch_idx == 0 and self.overlays and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            images, targets = batch
            count = self.overlays
            self._overlay_batch = (images[:count].cpu(), targets[:count].cpu(), predictions[:count].cpu())

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    # --- epoch ends ----------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        self._log_confusion_metrics("train", per_class=False)

    def on_validation_epoch_end(self) -> None:
        self._log_confusion_metrics("val", per_class=True)
        if self._overlay_batch is not None:
            self._log_overlays(*self._overlay_batch)
            self._overlay_batch = None

    def on_test_epoch_end(self) -> None:
        self._log_confusion_metrics("test", per_class=True)

    def _log_confusion_metrics(self, stage: str, per_class: bool) -> None:
        """Log the epoch's mean IoU, pixel accuracy and (`per_class`) IoU per class, then reset the matrix."""
        confusion_metric = getattr(self, f"{stage}_confusion")
        confusion = confusion_metric.compute().double()  # summed over every process
        confusion_metric.reset()
        iou = iou_per_class(confusion)
        metrics = {f"{stage}/miou": iou.nanmean(), f"{stage}/pixel_acc": confusion.trace() / confusion.sum()}
        if per_class:
            for name, value in zip(self.class_names, iou):
                if not value.isnan():
                    metrics[f"{stage}/iou/{name.replace(' ', '_')}"] = value
        self.log_dict({key: value.float() for key, value in metrics.items()}, sync_dist=True)

    def _log_overlays(self, images: Tensor, targets: Tensor, predictions: Tensor) -> None:
        """Send (image | ground truth | prediction) panels, uint8 `(H, 3 W, 3)`, to the loggers that take images."""
        panels = [
            prediction_panel(image, target, prediction, self.palette).permute(1, 2, 0).numpy()
            for image, target, prediction in zip(images, targets, predictions)
        ]
        captions = ["image | ground truth | prediction"] * len(panels)
        for logger in self.loggers:
            if callable(getattr(logger, "log_image", None)):
                logger.log_image(key="val/predictions", images=panels, caption=captions, step=self.global_step)
