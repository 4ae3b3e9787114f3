"""An exponential moving average of the weights (`callbacks=ema`), the model that the
DeiT/ConvNeXt recipes report (timm's `ModelEma`, decay 0.9999, updated after every
optimiser step).

Lightning's `EMAWeightAveraging` keeps the average and validates it; this subclass fixes
three points of the framework's checkpoint contract:

- every checkpoint stores the averaged weights as its `state_dict` (so `best-*.ckpt`, the
  test after training and `pretrained=` use the average) and the trained weights beside
  them; a resumed run restores both exactly and continues the average;
- testing or validating a checkpoint outside `fit` evaluates its averaged weights (the
  parent would put the trained weights back once a `fit` had created its average);
- the average lives on the device of the trained model (the parent builds it before the
  model is moved to the GPU), unless `device` says otherwise.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn


class ExponentialMovingAverage(EMAWeightAveraging):
    """`average = decay * average + (1 - decay) * weights` after every optimiser step, over
    parameters and buffers; validation and the final weights of `fit` are the average.

    Args:
        decay: in (0, 1); 0.9999 in the ConvNeXt recipe.
        update_starting_at_step: first optimiser step (0-based) that updates the average;
            before it, the average follows the weights (the first update copies them).
        device: where the average lives (None: with the model).
    """

    def __init__(self, decay: float = 0.9999, update_starting_at_step: int | None = None, device: str | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay={decay} must be in (0, 1)")
        if update_starting_at_step is not None and update_starting_at_step < 0:
            raise ValueError(f"callbacks.ema.update_starting_at_step={update_starting_at_step} must be >= 0 or null")
        super().__init__(device=device, decay=decay, update_starting_at_step=update_starting_at_step)
        self.decay = decay

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._device is None and self._average_model is not None:
            self._average_model.to(pl_module.device)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # otherwise the module already holds the checkpoint's state_dict: the averaged weights
