"""Classification of images `(B, C, H, W)` and sequences `(B, C, L)`."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from engine.tasks.base import TaskModule


class ClassificationTask(TaskModule):
    """Cross-entropy training; logs `{train,val,test}/loss`, `/acc` and, with more than
    `top_k` classes, `/top{k}` accuracy.

    Targets are class indices `(B,)` or class probabilities `(B, K)` (batches mixed by
    Mixup/CutMix, `datasets.mixing`); the metrics count the most probable class as the label.

    Args:
        num_classes: number of classes `K`; the net maps inputs to `(B, K)` logits.
        label_smoothing: cross-entropy label smoothing.
        top_k: also report top-k accuracy (0 disables it).
        **kwargs: `TaskModule` arguments (net, optimizer, scheduler, ...).
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, top_k: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"task: num_classes={num_classes} must be >= 2")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes = num_classes
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if 0 < top_k < num_classes:
            metrics[f"top{top_k}"] = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")

    def expected_output_shape(self, batch_size: int, input_size: tuple[int, ...]) -> tuple[int, ...]:
        return (batch_size, self.num_classes)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = self.criterion(logits, targets)
        metrics.update(logits, targets if targets.ndim == 1 else targets.argmax(dim=1))
        training = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=training, on_epoch=True, prog_bar=True, batch_size=len(targets), sync_dist=not training)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.with_auxiliary_loss(self._shared_step(batch, "train", self.train_metrics), len(batch[1]))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_metrics)
