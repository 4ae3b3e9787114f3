"""Pictures of learned layers during training, one callback per family on one shared base:
`BoxVisualization` (boxes), `FlexConvVisualization` (continuous kernels and masks) and
`DclsVisualization` (kernel-element positions)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor, nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class LayerPictures(pl.Callback):
    """Draw one picture per layer of a family after every `every_n_epochs`-th validation epoch
    and at the end of training.

    Each picture is saved to `<trainer.default_root_dir>/<folder>/<layer name>_epoch<NNN>.png`
    (epochs from 0, as in the checkpoint names) and sent to every logger that has `log_image`
    (W&B) under the key `<folder>/<layer name>`. The sanity check draws nothing. Subclasses
    name the `folder` and say which layers to draw (`layers`) and how (`picture`).

    Args:
        every_n_epochs: draw after every n-th validation epoch.
        max_layers: draw only the first `max_layers` layers (in module order); None: all.
    """

    folder: str

    def __init__(self, every_n_epochs: int = 1, max_layers: int | None = None) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"{type(self).__name__}: every_n_epochs={every_n_epochs} must be >= 1")
        if max_layers is not None and max_layers < 1:
            raise ValueError(f"{type(self).__name__}: max_layers={max_layers} must be >= 1 or None (all layers)")
        self.every_n_epochs = every_n_epochs
        self.max_layers = max_layers
        self._epoch = 0  # the epoch the weights are in
        self._drawn_at_step: int | None = None

    def layers(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        """`(name, layer)` of every layer of the family in `module`, in module order."""
        raise NotImplementedError

    def picture(self, layer: nn.Module, title: str) -> Figure:
        """The picture of `layer` as it is now, titled `title`."""
        raise NotImplementedError

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = trainer.current_epoch

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._drawn_at_step:
            self.draw(trainer, pl_module, self._epoch)

    @rank_zero_only
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Save and log the pictures of the family's layers of `pl_module` as they are now."""
        import matplotlib.pyplot as plt

        folder = Path(trainer.default_root_dir) / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for name, layer in self.layers(pl_module)[: self.max_layers]:
            figure = self.picture(layer, f"{name}, epoch {epoch}")
            path = folder / f"{name}_epoch{epoch:03d}.png"
            figure.savefig(path, bbox_inches="tight")
            plt.close(figure)
            for logger in trainer.loggers:
                if callable(getattr(logger, "log_image", None)):
                    logger.log_image(key=f"{self.folder}/{name}", images=[str(path)], caption=[f"epoch {epoch}"], step=trainer.global_step)
        self._drawn_at_step = trainer.global_step


class BoxVisualization(LayerPictures):
    """The boxes of every `BoxConv2d` (`layers.box.visualize.draw_boxes`) over the first
    validation input, in `boxes/`. The input is resized to the layer's `(max_input_h,
    max_input_w)`, so that the boxes of a layer deep in the net are drawn in its own pixel units.
    """

    folder = "boxes"

    def __init__(self, every_n_epochs: int = 1, max_layers: int | None = None) -> None:
        super().__init__(every_n_epochs, max_layers)
        self._first_input: Tensor | None = None  # (C, H, W)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._first_input is None:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._first_input = inputs[0].detach().cpu()

    def layers(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        from layers.box import BoxConv2d

        return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, BoxConv2d)]

    def picture(self, layer: nn.Module, title: str) -> Figure:
        from layers.box.visualize import draw_boxes

        figure = draw_boxes(layer, self._layer_sized_input(layer))
        figure.suptitle(title)
        return figure

    def _layer_sized_input(self, layer: nn.Module) -> Tensor | None:
        """The first validation input, `(C, max_input_h, max_input_w)`; None before any validation."""
        if self._first_input is None:
            return None
        size = (layer.max_input_h, layer.max_input_w)
        if tuple(self._first_input.shape[-2:]) == size:
            return self._first_input
        return F.interpolate(self._first_input[None].float(), size=size, mode="area")[0]


class FlexConvVisualization(LayerPictures):
    """The masks and kernels of every continuous convolution (`CKConv`, `FlexConv`;
    `layers.flexconv.visualize.draw_kernels`, on the grid of the layer's last input), in `kernels/`.

    Args:
        max_kernels: kernels drawn per layer.
    """

    folder = "kernels"

    def __init__(self, every_n_epochs: int = 1, max_layers: int | None = None, max_kernels: int = 8) -> None:
        super().__init__(every_n_epochs, max_layers)
        if max_kernels < 1:
            raise ValueError(f"FlexConvVisualization: max_kernels={max_kernels} must be >= 1")
        self.max_kernels = max_kernels

    def layers(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        from layers.flexconv import CKConv

        return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, CKConv) and layer.grid_size is not None]

    def picture(self, layer: nn.Module, title: str) -> Figure:
        from layers.flexconv.visualize import draw_kernels

        return draw_kernels(layer, max_kernels=self.max_kernels, title=title)


class DclsVisualization(LayerPictures):
    """The learned positions (and sigmas) of every DCLS layer (`layers.dcls.visualize.draw_positions`),
    in `dcls/` (`callbacks=dcls_visualization`).

    Args:
        max_filters: filters drawn per layer.
    """

    folder = "dcls"

    def __init__(self, every_n_epochs: int = 1, max_layers: int | None = None, max_filters: int = 8) -> None:
        super().__init__(every_n_epochs, max_layers)
        if max_filters < 1:
            raise ValueError(f"DclsVisualization: max_filters={max_filters} must be >= 1")
        self.max_filters = max_filters

    def layers(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        from engine.dcls_callbacks import dcls_layers

        return dcls_layers(module)

    def picture(self, layer: nn.Module, title: str) -> Figure:
        from layers.dcls.visualize import draw_positions

        figure = draw_positions(layer, self.max_filters)
        figure.suptitle(title)
        return figure
