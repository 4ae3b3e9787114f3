"""When the repulsion loss of the DCLS ConvNeXt recipe is on (`callbacks=dcls_repulsion`).

The DCLS group's ConvNeXt code adds its repulsion term once the 0-based epoch exceeds 20
(`engine.py` of K-H-Ismail/ConvNeXt-dcls); the nets that carry that term
(`models.convnext.ConvNeXt` with `net.repulsion_factor` > 0) expose `repulsion_enabled`,
which this callback sets at the start of every training epoch. It depends on the epoch
only, so a resumed run switches it exactly as an uninterrupted one.
"""

from __future__ import annotations

import pytorch_lightning as pl


class RepulsionFrom(pl.Callback):
    """Enables the repulsion loss from `start_epoch` (0-based) on, disables it before.

    Args:
        start_epoch: first epoch with the term (21 in the reference: `epoch > 20`).
    """

    def __init__(self, start_epoch: int = 21) -> None:
        if start_epoch < 0:
            raise ValueError(f"callbacks.dcls_repulsion.start_epoch={start_epoch} must be >= 0")
        self.start_epoch = start_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for module in pl_module.modules():
            if hasattr(module, "repulsion_enabled"):
                module.repulsion_enabled = trainer.current_epoch >= self.start_epoch
