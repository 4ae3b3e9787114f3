"""Lightning callbacks of the DCLS family: position clamping after every optimiser step (the
pictures are `engine.visualization.DclsVisualization`)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch import nn

from layers.dcls.dcls_layer import _DclsNd


def dcls_layers(module: nn.Module) -> list[tuple[str, _DclsNd]]:
    """`(name, layer)` of the DCLS layers of `module`, in module order."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, _DclsNd)]


class DclsClamp(pl.Callback):
    """Clamp the positions of every DCLS layer into its kernel after every training batch
    (so after every optimiser step, and before validation). On by default (in
    `cfg/callbacks/default.yaml`); nets without DCLS layers are left untouched."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        for _, layer in dcls_layers(pl_module):
            layer.clamp_parameters()
