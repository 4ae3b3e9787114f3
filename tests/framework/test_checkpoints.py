"""Checkpoint callbacks: model selection breaks ties by the validation loss, and last.ckpt
is written every epoch (and every N minutes when asked), whatever the other callbacks do."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine.checkpointing import BestCheckpoint, LastCheckpoint


class Saturating(pl.LightningModule):
    """Validation accuracy reaches 1.0 at once and stays there; the loss keeps falling."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 1.0)
        self.log("val/loss", 1.0 / (self.current_epoch + 1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, callbacks, epochs=3) -> pl.Trainer:
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path), num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Saturating(), train_dataloaders=data, val_dataloaders=data)
    return trainer


def test_ties_of_the_monitored_metric_go_to_the_lower_validation_loss(tmp_path):
    best = BestCheckpoint(monitor="val/acc", mode="max", dirpath=str(tmp_path), filename="best-{epoch}", save_top_k=1)
    fit(tmp_path, [best])
    assert best.best_model_path.endswith("best-epoch=2.ckpt")  # Lightning alone keeps epoch 0
    assert sorted(path.name for path in tmp_path.glob("best-*.ckpt")) == ["best-epoch=2.ckpt"]


def test_without_a_tie_breaker_the_first_best_is_kept(tmp_path):
    best = BestCheckpoint(monitor="val/acc", mode="max", dirpath=str(tmp_path), filename="best-{epoch}", tie_breaker=None)
    fit(tmp_path, [best])
    assert best.best_model_path.endswith("best-epoch=0.ckpt")


def test_last_checkpoint_is_written_every_epoch_even_beside_a_best_checkpoint(tmp_path, monkeypatch):
    saved_at: list[int] = []
    original = LastCheckpoint._save_last_checkpoint
    monkeypatch.setattr(LastCheckpoint, "_save_last_checkpoint", lambda self, trainer, candidates: (saved_at.append(trainer.global_step), original(self, trainer, candidates)))
    last = LastCheckpoint()
    last.dirpath = str(tmp_path)
    fit(tmp_path, [BestCheckpoint(monitor="val/loss", dirpath=str(tmp_path)), last])
    assert saved_at == [4, 8, 12]  # 4 steps per epoch


def test_last_checkpoint_every_few_minutes(tmp_path, monkeypatch):
    saved_at: list[int] = []
    original = LastCheckpoint._save_last_checkpoint
    monkeypatch.setattr(LastCheckpoint, "_save_last_checkpoint", lambda self, trainer, candidates: (saved_at.append(trainer.global_step), original(self, trainer, candidates)))
    last = LastCheckpoint(train_time_interval=1e-9)  # minutes: due after every step
    last.dirpath = str(tmp_path)
    fit(tmp_path, [last], epochs=1)
    assert saved_at == [1, 2, 3, 4]  # steps 1-3 by time; step 4 ends the epoch


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"every_n_train_steps": 0}, "every_n_train_steps=0 must be >= 1 or null"),
        ({"train_time_interval": -5.0}, "train_time_interval=-5.0 must be > 0 minutes or null"),
        ({"every_n_train_steps": 10, "train_time_interval": 5.0}, "set every_n_train_steps or train_time_interval, not both"),
    ],
)
def test_last_checkpoint_settings_are_checked(arguments, message):
    with pytest.raises(ValueError, match=message):
        LastCheckpoint(**arguments)
