"""`BoxVisualization`: pictures of the learned boxes of the net's box convolutions during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from layers.box import BoxConv2d
from layers.box.visualize import draw_boxes


class BoxVisualization(pl.Callback):
    """Draw the boxes of every `BoxConv2d` of the net over the first validation input.

    After every `every_n_epochs`-th validation epoch and at the end of training, each box
    layer's boxes (see `layers.box.visualize.draw_boxes`) are saved to
    `<trainer.default_root_dir>/boxes/<layer name>_epoch<NNN>.png` (epochs from 0, as in the
    checkpoint names) and sent to every logger that has `log_image` (W&B). The input is
    resized to the layer's `(max_input_h, max_input_w)`, so that the boxes of a layer deep in
    the net are drawn in its own pixel units. The sanity check draws nothing.

    Args:
        every_n_epochs: draw after every n-th validation epoch.
        max_layers: draw only the first `max_layers` box layers (in module order); None: all.
    """

    def __init__(self, every_n_epochs: int = 1, max_layers: int | None = None) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"BoxVisualization: every_n_epochs={every_n_epochs} must be >= 1")
        if max_layers is not None and max_layers < 1:
            raise ValueError(f"BoxVisualization: max_layers={max_layers} must be >= 1 or None (all layers)")
        self.every_n_epochs = every_n_epochs
        self.max_layers = max_layers
        self._first_input: Tensor | None = None  # (C, H, W)
        self._epoch = 0  # the epoch the weights are in
        self._drawn_at_step: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = trainer.current_epoch

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._first_input is None:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._first_input = inputs[0].detach().cpu()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._drawn_at_step:
            self.draw(trainer, pl_module, self._epoch)

    @rank_zero_only
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Save and log the pictures of the box layers of `pl_module` as they are now."""
        folder = Path(trainer.default_root_dir) / "boxes"
        folder.mkdir(parents=True, exist_ok=True)
        for name, layer in self.box_layers(pl_module):
            figure = draw_boxes(layer, self._layer_sized_input(layer))
            figure.suptitle(f"{name}, epoch {epoch}")
            path = folder / f"{name}_epoch{epoch:03d}.png"
            figure.savefig(path, bbox_inches="tight")
            for logger in trainer.loggers:
                if callable(getattr(logger, "log_image", None)):
                    logger.log_image(key=f"boxes/{name}", images=[str(path)], caption=[f"epoch {epoch}"], step=trainer.global_step)
        self._drawn_at_step = trainer.global_step

    def box_layers(self, pl_module: pl.LightningModule) -> list[tuple[str, BoxConv2d]]:
        """`(name, layer)` of the box convolutions to draw, in module order."""
        layers = [(name, module) for name, module in pl_module.named_modules() if isinstance(module, BoxConv2d)]
        return layers[: self.max_layers]

    def _layer_sized_input(self, layer: BoxConv2d) -> Tensor | None:
        """The first validation input, `(C, max_input_h, max_input_w)`; None before any validation."""
        if self._first_input is None:
            return None
        size = (layer.max_input_h, layer.max_input_w)
        if tuple(self._first_input.shape[-2:]) == size:
            return self._first_input
        return F.interpolate(self._first_input[None].float(), size=size, mode="area")[0]
