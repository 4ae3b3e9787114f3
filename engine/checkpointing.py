"""Checkpoints that survive crashes and resume runs exactly.

- `AtomicCheckpointIO` writes every checkpoint beside its target and renames it into
  place, so a crash mid-write never leaves a truncated file and the previous one survives.
- `LastCheckpoint` keeps `last.ckpt` at most one epoch old (and, optionally, at most N
  steps or minutes old), so a killed run loses at most that much work.
- `BestCheckpoint` keeps the best checkpoint by the validation metric, breaking ties by a
  second metric (validation loss), so a metric that saturates early (accuracy 1.0 on a
  small split) does not freeze the selection at its first maximum.
- `ResumeStateCheckpoint` stores what Lightning does not restore exactly, the RNG states
  and the position of the training loader in its epoch, and restores them on resume, so
  a resumed run draws the same random numbers and batches as an uninterrupted one.
- `RunIdentity` stores the W&B run id and what the run builds (net, conv, their configs),
  read back by `engine.resume` to continue the same W&B run and to refuse a checkpoint
  of another model.
"""

from __future__ import annotations

import math
import os
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from datasets.caching import save_atomically

RUN_KEY = "farconv_run"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose writes are atomic (`datasets.caching.atomic_file`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        save_atomically(checkpoint, Path(path))


class LastCheckpoint(ModelCheckpoint):
    """Rewrites `last.ckpt` after every training epoch and when training ends, and also
    every `every_n_train_steps` steps or `train_time_interval` minutes if one is set.

    Lightning's own `save_last` writes `last.ckpt` only beside another save or when
    training ends, so a run killed before its end could not be resumed. The epoch's save
    happens as the next epoch starts (after validation, the best-checkpoint update and
    the epoch's logging), where Lightning resumes cleanly into a fresh epoch; for the
    same reason no step- or time-triggered save happens on the last batch of an epoch.

    Args:
        every_n_train_steps: also save every this many optimiser steps (null: never).
        train_time_interval: also save when this many minutes passed since the last save
            (null: never).
    """

    def __init__(self, every_n_train_steps: int | None = None, train_time_interval: float | None = None) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"callbacks.last_checkpoint.every_n_train_steps={every_n_train_steps} must be >= 1 or null")
        if train_time_interval is not None and not (train_time_interval > 0 and math.isfinite(train_time_interval)):
            raise ValueError(f"callbacks.last_checkpoint.train_time_interval={train_time_interval} must be > 0 minutes or null")
        if every_n_train_steps is not None and train_time_interval is not None:
            raise ValueError("callbacks.last_checkpoint: set every_n_train_steps or train_time_interval, not both")
        interval = timedelta(minutes=train_time_interval) if train_time_interval is not None else None
        super().__init__(
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=interval,
            save_on_train_epoch_end=True,
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_global_step_saved = trainer.global_step  # nothing new to save yet (resumed runs)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_now(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_now(trainer)

    def _save_now(self, trainer: pl.Trainer) -> None:
        if not trainer.fast_dev_run and not trainer.sanity_checking and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_time_checked = time.monotonic()


class BestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` on `monitor` whose ties are broken by `tie_breaker`.

    Args:
        tie_breaker: metric that decides between equal `monitor` values (null: the
            first of equal values is kept, as in Lightning).
        tie_breaker_mode: `min` or `max` for `tie_breaker`.
        **kwargs: `ModelCheckpoint` arguments (`monitor`, `mode`, `save_top_k`, ...).
    """

    def __init__(self, tie_breaker: str | None = "val/loss", tie_breaker_mode: str = "min", **kwargs: Any) -> None:
        if tie_breaker_mode not in ("min", "max"):
            raise ValueError(f"callbacks.best_checkpoint.tie_breaker_mode={tie_breaker_mode!r} must be 'min' or 'max'")
        super().__init__(**kwargs)
        self.tie_breaker = tie_breaker
        self.tie_breaker_mode = tie_breaker_mode
        self.tie_scores: dict[str, float] = {}  # checkpoint path -> its tie-breaker value
        self._candidate_tie: float | None = None

    def _tie_value(self, trainer: pl.Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.tie_breaker) if self.tie_breaker else None
        return None if value is None else float(value)

    def _better_tie(self, candidate: float | None, incumbent: float | None) -> bool:
        if candidate is None or incumbent is None:
            return False
        return candidate < incumbent if self.tie_breaker_mode == "min" else candidate > incumbent

    def _rank(self, path: str) -> tuple[float, float]:
        """Sort key, larger is better: (monitor, tie-breaker), both oriented."""
        score = float(self.best_k_models[path])
        tie = self.tie_scores.get(path)
        tie = 0.0 if tie is None else tie
        return (score if self.mode == "max" else -score, tie if self.tie_breaker_mode == "max" else -tie)

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        self._candidate_tie = self._tie_value(trainer)
        if super().check_monitor_top_k(trainer, current):
            return True
        if current is None or not self.kth_best_model_path or self.kth_best_model_path not in self.best_k_models:
            return False
        tied = float(current) == float(self.best_k_models[self.kth_best_model_path])
        return tied and self._better_tie(self._candidate_tie, self.tie_scores.get(self.kth_best_model_path))

    def _update_best_and_save(self, current: torch.Tensor, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        known = set(self.best_k_models)
        super()._update_best_and_save(current, trainer, monitor_candidates)
        for path in set(self.best_k_models) - known:
            self.tie_scores[path] = self._candidate_tie
        self.tie_scores = {path: value for path, value in self.tie_scores.items() if path in self.best_k_models}
        self.best_model_path = max(self.best_k_models, key=self._rank)
        self.best_model_score = self.best_k_models[self.best_model_path]
        if len(self.best_k_models) == self.save_top_k:
            self.kth_best_model_path = min(self.best_k_models, key=self._rank)
            self.kth_value = self.best_k_models[self.kth_best_model_path]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tie_scores": dict(self.tie_scores)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.tie_scores = {path: value for path, value in state_dict.get("tie_scores", {}).items() if path in self.best_k_models}


def _collect_random_states() -> dict[str, Any]:
    # Tensors, ints and tuples only, so checkpoints load with torch.load(weights_only=True).
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeStateCheckpoint(pl.Callback):
    """Saves the RNG states and the training loader's position with each checkpoint and
    restores both when training resumes from one, just before the first batch.

    Lightning saves the state of a stateful loader too, but does not load it when the
    loader was already built to count the training steps (`estimated_stepping_batches`,
    which the LR schedules use), so the position is carried here. The position applies
    only when Lightning resumes within the same epoch: a checkpoint written at the end of
    an epoch records a finished pass, and Lightning then starts the next epoch afresh.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] = {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["random_states"] = _collect_random_states()
        loader = trainer.train_dataloader
        if trainer.training and hasattr(loader, "state_dict"):
            position = loader.state_dict()
            if 0 < position["batches_consumed"] < len(loader):  # else the next epoch starts afresh
                checkpoint["train_loader"] = position

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = {key: checkpoint[key] for key in ("random_states", "train_loader") if key in checkpoint}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "random_states" in self._pending:
            _restore_random_states(self._pending["random_states"])
        loader = trainer.train_dataloader
        position = self._pending.get("train_loader")
        if position is not None and position["epoch"] == trainer.current_epoch and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(position)
        self._pending = {}


class RunIdentity(pl.Callback):
    """Records with every checkpoint which W&B run it belongs to and what the run builds
    (`build`: the net and conv choices and their resolved configs), for `engine.resume`."""

    def __init__(self, build: dict[str, Any] | None = None) -> None:
        self.build = build or {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        from pytorch_lightning.loggers import WandbLogger

        wandb_ids = [logger.version for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        checkpoint[RUN_KEY] = {"wandb_run_id": wandb_ids[0] if wandb_ids else None, "build": self.build}
