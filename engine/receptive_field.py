"""`ReceptiveFieldMonitor`: receptive fields growing during training, for every family.

Each module of the net that implements `layers.factory.LearnedExtent` (`learned_extent()
-> {"name": 1-D tensor in input pixels}`: box width/height, DCLS position spread, FlexConv
mask size) is logged the same way, so the callback has no case per family.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor, nn

from layers.receptive_field import effective_receptive_field


def learned_extent_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """`(name, module)` of the modules of `net` that report a learned extent, in module order."""
    return [(name, module) for name, module in net.named_modules() if callable(getattr(module, "learned_extent", None))]


class ReceptiveFieldMonitor(pl.Callback):
    """Log learned extents and effective receptive field radii after validation epochs.

    After every `every_n_epochs`-th validation epoch (not the sanity check), for each
    learned-extent layer `<layer>` and each extent `<key>` it reports, every logger gets
    `extent/<layer>/<key>_mean`, `_min` and `_max` (pixels); W&B loggers also get the
    histogram `extent/<layer>/<key>` when `histograms`. With `erf_every_n_epochs > 0`, the
    radii holding 50% and 90% of the gradient-based effective receptive field
    (`layers.receptive_field`) of the centre unit of the net's last feature map, over the
    first `erf_samples` validation inputs, are logged as `erf/r50` and `erf/r90` (one
    forward and backward of that many samples: cheap next to a validation epoch).

    Args:
        every_n_epochs: log extents after every n-th validation epoch.
        histograms: also send histograms to W&B loggers.
        erf_every_n_epochs: log ERF radii after every n-th validation epoch; 0: never.
        erf_samples: validation inputs the ERF is averaged over.
    """

    def __init__(self, every_n_epochs: int = 1, histograms: bool = True, erf_every_n_epochs: int = 1, erf_samples: int = 8) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"ReceptiveFieldMonitor: every_n_epochs={every_n_epochs} must be >= 1")
        if erf_every_n_epochs < 0:
            raise ValueError(f"ReceptiveFieldMonitor: erf_every_n_epochs={erf_every_n_epochs} must be >= 0 (0: no ERF)")
        if erf_samples < 1:
            raise ValueError(f"ReceptiveFieldMonitor: erf_samples={erf_samples} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.histograms = histograms
        self.erf_every_n_epochs = erf_every_n_epochs
        self.erf_samples = erf_samples
        self._inputs: Tensor | None = None  # (erf_samples, C, *S), the first validation inputs

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._inputs is None or len(self._inputs) < self.erf_samples:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            with torch.inference_mode(False):  # a normal tensor, usable for autograd later
                taken = inputs.detach().cpu().clone()
            self._inputs = taken if self._inputs is None else torch.cat([self._inputs, taken])
            self._inputs = self._inputs[: self.erf_samples]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        metrics: dict[str, float] = {}
        if epoch % self.every_n_epochs == 0:
            metrics.update(self.extent_metrics(trainer, self._net(pl_module)))
        if self.erf_every_n_epochs and epoch % self.erf_every_n_epochs == 0 and self._inputs is not None:
            metrics.update(self.erf_metrics(self._net(pl_module), pl_module.device))
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _net(pl_module: pl.LightningModule) -> nn.Module:
        return getattr(pl_module, "net", pl_module)

    def extent_metrics(self, trainer: pl.Trainer, net: nn.Module) -> dict[str, float]:
        """Mean, min and max of every extent (and the W&B histograms, sent here)."""
        metrics: dict[str, float] = {}
        histograms: dict[str, Tensor] = {}
        for name, layer in learned_extent_layers(net):
            for key, values in layer.learned_extent().items():
                values = values.detach().float().flatten().cpu()
                tag = f"extent/{name}/{key}"
                metrics.update({f"{tag}_mean": values.mean().item(), f"{tag}_min": values.min().item(), f"{tag}_max": values.max().item()})
                histograms[tag] = values
        if self.histograms and histograms:
            self._log_histograms(trainer, histograms)
        return metrics

    @rank_zero_only
    def _log_histograms(self, trainer: pl.Trainer, histograms: dict[str, Tensor]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({**{tag: wandb.Histogram(values.numpy()) for tag, values in histograms.items()}, "trainer/global_step": trainer.global_step})

    def erf_metrics(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """`{"erf/r50", "erf/r90"}` of `net` on the stored validation inputs."""
        with torch.inference_mode(False), torch.enable_grad():
            erf = effective_receptive_field(net, self._inputs.clone().to(device))
        return {f"erf/{key}": value for key, value in erf.radii().items()}
