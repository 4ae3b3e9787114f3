"""Checkpoints that survive crashes and resume runs exactly.

- `AtomicCheckpointIO` writes every checkpoint beside its target and renames it into
  place, so a crash mid-write never leaves a truncated file and the previous one survives.
- `ResumeStateCheckpoint` stores what Lightning does not restore exactly, the RNG states
  and the position of the training loader in its epoch, and restores them on resume, so
  a resumed run draws the same random numbers and batches as an uninterrupted one.
- `RunIdentity` stores the W&B run id, so a resumed run continues the same W&B run.
- `find_resume_checkpoint` resolves `resume=last|<path>`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from engine.config import ConfigError

RUN_KEY = "farconv_run"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose writes are atomic (temporary file, fsync, rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)


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
    which the LR schedules use), so the position is carried here.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] = {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["random_states"] = _collect_random_states()
        loader = trainer.train_dataloader
        if trainer.training and hasattr(loader, "state_dict"):
            checkpoint["train_loader"] = loader.state_dict()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = {key: checkpoint[key] for key in ("random_states", "train_loader") if key in checkpoint}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "random_states" in self._pending:
            _restore_random_states(self._pending["random_states"])
        loader = trainer.train_dataloader
        if "train_loader" in self._pending and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self._pending["train_loader"])
        self._pending = {}


class RunIdentity(pl.Callback):
    """Records which W&B run a checkpoint belongs to (read back by `run_identity`)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        from pytorch_lightning.loggers import WandbLogger

        wandb_ids = [logger.version for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        checkpoint[RUN_KEY] = {"wandb_run_id": wandb_ids[0] if wandb_ids else None}


def run_identity(checkpoint_path: Path) -> dict[str, Any]:
    """What `RunIdentity` stored in a checkpoint (empty for foreign checkpoints)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get(RUN_KEY) or {}


def find_resume_checkpoint(resume: str, runs_dir: Path, name: str) -> Path:
    """`last`: the newest `last.ckpt` of runs named `name`; else `resume` is a checkpoint path."""
    if resume == "last":
        candidates = sorted((runs_dir / name).glob("*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
        if not candidates:
            raise ConfigError(
                f"resume=last: no checkpoint matches {runs_dir / name}/*/checkpoints/last.ckpt; "
                "train first, or pass resume=<path to a .ckpt>"
            )
        return candidates[-1]
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"resume={resume}: no such checkpoint file; use resume=last or a path to a .ckpt")
    return path
