"""Lightning callbacks of the DCLS family: the sigma schedule of Gaussian layers (the pictures
are `engine.visualization.DclsVisualization`; positions are clamped by the task after every
optimiser step, `layers.factory.ConstrainedParameters`)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from layers.dcls.dcls_layer import _DclsNd
from layers.dcls.reference import axis_sizes

SCHEDULE_INTERVALS = ("epoch", "step")


def dcls_layers(module: nn.Module) -> list[tuple[str, _DclsNd]]:
    """`(name, layer)` of the DCLS layers of `module`, in module order."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, _DclsNd)]


def scheduled_sigma(initial: float, final: float, progress: float) -> float:
    """Geometric interpolation from `initial` (progress 0) to `final` (progress >= 1)."""
    return initial * (final / initial) ** min(max(progress, 0.0), 1.0)


class DclsSigmaSchedule(pl.Callback):
    """The sigma schedule of the DCLS group's Gaussian training code: `SIG` of every `gauss`
    layer is frozen (the schedule replaces its learning) and set, at the start of every epoch
    (or step), to

        SIG(t) = initial * (final / initial) ** min(t / T, 1),

    a geometric decay from `initial` to `final` over the first `T = decay_fraction` of
    training (in epochs of `trainer.max_epochs`, or in optimiser steps), then constant. The
    Gaussian's deviation is `|SIG| + 0.27`, so the default `final = 0.23` ends at 0.5 pixel.
    `SIG` is a function of the epoch or step alone, so a resumed run continues the schedule
    exactly. Nets without Gaussian DCLS layers are left untouched (`callbacks=dcls_sigma_schedule`).

    Args:
        initial: starting `SIG`; None: half the layer's dilated size along each axis.
        final: `SIG` reached after the decay (must be > 0).
        decay_fraction: part of the training over which it decays, in (0, 1].
        interval: `epoch` (the reference code's) or `step`.
    """

    def __init__(self, initial: float | None = None, final: float = 0.23, decay_fraction: float = 0.25, interval: str = "epoch") -> None:
        super().__init__()
        if initial is not None and not initial > 0:
            raise ValueError(f"DclsSigmaSchedule: initial={initial} must be null or > 0")
        if not final > 0:
            raise ValueError(f"DclsSigmaSchedule: final={final} must be > 0")
        if not 0 < decay_fraction <= 1:
            raise ValueError(f"DclsSigmaSchedule: decay_fraction={decay_fraction} must be in (0, 1]")
        if interval not in SCHEDULE_INTERVALS:
            raise ValueError(f"DclsSigmaSchedule: interval={interval} must be one of {', '.join(SCHEDULE_INTERVALS)}")
        self.initial, self.final, self.decay_fraction, self.interval = initial, final, decay_fraction, interval

    @staticmethod
    def layers(module: nn.Module) -> list[_DclsNd]:
        """The Gaussian DCLS layers of `module` (shared `SIG`s appear once per layer)."""
        return [layer for _, layer in dcls_layers(module) if layer.version == "gauss"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Freeze `SIG` before the optimiser is built, so it is left out of every group, and
        start it at `initial` (a resumed run's checkpoint then restores its own)."""
        for layer in self.layers(pl_module):
            layer.SIG.requires_grad_(False)
        if stage == "fit":
            self.apply(pl_module, 0.0)

    def decay_length(self, trainer: pl.Trainer) -> float:
        """T, in epochs or steps."""
        total = trainer.max_epochs if self.interval == "epoch" else trainer.estimated_stepping_batches
        if total is None or not 0 < total < float("inf"):
            limit = "trainer.max_epochs" if self.interval == "epoch" else "a finite number of training steps"
            raise ValueError(f"callbacks.dcls_sigma_schedule: interval={self.interval} needs {limit}, got {total}")
        return self.decay_fraction * total

    @torch.no_grad()
    def apply(self, module: nn.Module, progress: float) -> None:
        """Set `SIG` of every Gaussian layer for `progress` = t / T."""
        for layer in self.layers(module):
            for a, size in enumerate(axis_sizes(layer.dilated_kernel_size)):
                initial = size / 2 if self.initial is None else self.initial
                layer.SIG[a].fill_(scheduled_sigma(initial, self.final, progress))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch" and self.layers(pl_module):
            self.apply(pl_module, trainer.current_epoch / self.decay_length(trainer))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.interval == "step" and self.layers(pl_module):
            self.apply(pl_module, trainer.global_step / self.decay_length(trainer))
