"""Resuming: a run killed (SIGKILL) at any point and resumed with `resume=last` ends with
the same global step, the same per-epoch metric rows and the same weights as an
uninterrupted run (CPU, deterministic); checkpoints of other models are refused."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from engine.cli import choices_of, compose
from engine.config import ConfigError
from engine.experiment import build_experiment
from tests.conftest import COMMAND_TIMEOUT, QUICK, REPO

# digits: 1,293 training images = 21 batches of 64 per epoch.
STEPS_PER_EPOCH = 21
OVERRIDES = [
    *QUICK,
    "logger=csv",
    "train.epochs=3",
    "deterministic=true",
    "net.dropout=0.3",  # exercises the restored RNG state
]

KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import pytorch_lightning as pl
    from engine.cli import choices_of, compose
    from engine.experiment import build_experiment

    class KillAt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(sys.argv[1]):
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = compose(sys.argv[3:])
    build_experiment(cfg, Path(sys.argv[2]), choices_of(cfg), extra_callbacks=[KillAt()]).run()
    """
)


def net_weights(experiment) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in experiment.task.net.state_dict().items()}


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """The per-epoch rows (validation and training-epoch metrics) of the run's metrics.csv."""
    (metrics_file,) = run_dir.glob("csv/version_*/metrics.csv")
    with open(metrics_file, newline="") as file:
        rows = list(csv.DictReader(file))
    keys = ("val/acc", "val/loss", "train/acc", "train/loss_epoch")
    return [{key: row[key] for key in ("epoch", "step", *keys)} for row in rows if any(row.get(key) for key in keys)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("uninterrupted")
    cfg = compose([*OVERRIDES, f"paths.runs={runs}"])
    experiment = build_experiment(cfg, runs / "run", choices_of(cfg))
    experiment.run()
    return experiment


def kill_at(step: int, run_dir: Path, overrides: list[str]) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(step), str(run_dir), *overrides], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    assert killed.returncode == -9, killed.stderr[-3000:]  # died by SIGKILL


@pytest.mark.parametrize(
    "kill_step, extra, checkpoint_step",
    [
        # default settings: last.ckpt from the end of epoch 0, the kill is mid-epoch 1
        (STEPS_PER_EPOCH + 6, [], STEPS_PER_EPOCH),
        # killed right after an epoch ended: resume starts the next epoch, skipping nothing
        (2 * STEPS_PER_EPOCH + 1, [], 2 * STEPS_PER_EPOCH),
        # last.ckpt also every 5 steps: the newest checkpoint is mid-epoch 1
        (STEPS_PER_EPOCH + 6, ["callbacks.last_checkpoint.every_n_train_steps=5"], 25),
    ],
    ids=["default-mid-epoch", "default-epoch-start", "every-5-steps"],
)
def test_killed_run_resumes_like_an_uninterrupted_run(uninterrupted, tmp_path, kill_step, extra, checkpoint_step):
    cfg = [*OVERRIDES, f"paths.runs={tmp_path}", *extra]
    run_dir = tmp_path / compose(cfg).name / "2000-01-01_00-00-00"
    kill_at(kill_step, run_dir, cfg)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == checkpoint_step
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))  # no half-written checkpoint left behind

    resumed_cfg = compose([*cfg, "resume=last"])
    resumed = build_experiment(resumed_cfg, tmp_path / "unused", choices_of(resumed_cfg))
    assert resumed.resume_from == run_dir / "checkpoints" / "last.ckpt"
    assert resumed.run_dir == run_dir  # continues in the original folder
    resumed.run()

    assert resumed.trainer.global_step == uninterrupted.trainer.global_step == 3 * STEPS_PER_EPOCH
    rows, expected_rows = epoch_rows(run_dir), epoch_rows(uninterrupted.run_dir)
    if checkpoint_step % STEPS_PER_EPOCH:
        # resumed mid-epoch: Lightning does not checkpoint the running means of the training
        # epoch's metrics, so that epoch's training row averages only the batches after the resume
        interrupted = str(checkpoint_step // STEPS_PER_EPOCH)
        rows, expected_rows = ([row for row in table if row["epoch"] != interrupted or row["val/acc"]] for table in (rows, expected_rows))
    assert rows == expected_rows
    expected = net_weights(uninterrupted)
    for key, value in net_weights(resumed).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_resuming_from_an_end_of_epoch_best_checkpoint_runs_every_remaining_epoch(uninterrupted, tmp_path):
    first = uninterrupted.run_dir / "checkpoints"
    best = next(first.glob("best-*.ckpt"))
    epoch = torch.load(best, weights_only=True)["epoch"]
    # a copy, so the uninterrupted run's files stay as they are
    copy = tmp_path / "copy" / "run"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "checkpoints" / best.name).write_bytes(best.read_bytes())
    cfg = compose([*OVERRIDES, f"paths.runs={tmp_path}", f"resume={copy / 'checkpoints' / best.name}"])
    resumed = build_experiment(cfg, tmp_path / "new", choices_of(cfg))
    resumed.run()
    assert resumed.trainer.global_step == 3 * STEPS_PER_EPOCH
    # a checkpoint outside a run folder (no config.yaml beside checkpoints/) continues in a new folder
    assert resumed.run_dir == tmp_path / "new" and (resumed.run_dir / "config.yaml").is_file()
    assert sorted(path.name for path in copy.iterdir()) == ["checkpoints"]
    epochs = [row["epoch"] for row in epoch_rows(resumed.run_dir) if row["val/acc"]]
    assert epochs == [str(e) for e in range(epoch + 1, 3)]


def test_extending_a_finished_run_trains_the_next_epoch(tmp_path):
    cfg = [*OVERRIDES, f"paths.runs={tmp_path}", "train.epochs=1"]
    first = compose(cfg)
    build_experiment(first, tmp_path / first.name / "2000-01-01_00-00-00", choices_of(first)).run()
    longer = compose([*cfg[:-1], "train.epochs=2", "resume=last"])
    resumed = build_experiment(longer, tmp_path / "unused", choices_of(longer))
    resumed.run()
    assert resumed.trainer.global_step == 2 * STEPS_PER_EPOCH
    assert [row["epoch"] for row in epoch_rows(resumed.run_dir) if row["val/acc"]] == ["0", "1"]


class KeepFinalWeights(pl.Callback):
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.weights = {key: value.clone() for key, value in pl_module.net.state_dict().items()}


def test_a_resumed_run_without_a_best_checkpoint_tests_its_final_weights(tmp_path):
    cfg = [*OVERRIDES, f"paths.runs={tmp_path}", "callbacks.best_checkpoint=null", "train.epochs=1"]
    first = compose(cfg)
    build_experiment(first, tmp_path / first.name / "2000-01-01_00-00-00", choices_of(first)).run()
    longer = compose([*cfg[:-1], "train.epochs=2", "resume=last"])
    final = KeepFinalWeights()
    resumed = build_experiment(longer, tmp_path / "unused", choices_of(longer), extra_callbacks=[final])
    resumed.run()
    for key, value in resumed.task.net.state_dict().items():  # testing loaded no older checkpoint
        torch.testing.assert_close(value, final.weights[key], rtol=0, atol=0, msg=key)


def test_resume_last_continues_the_newest_run_or_names_it(tmp_path):
    cfg = [*OVERRIDES, f"paths.runs={tmp_path}", "train.epochs=1"]
    first = compose(cfg)
    build_experiment(first, tmp_path / first.name / "2000-01-01_00-00-00", choices_of(first)).run()
    newest = tmp_path / first.name / "2000-01-02_00-00-00"
    (newest / "checkpoints").mkdir(parents=True)  # a newer run killed before its first checkpoint
    resumed = compose([*cfg, "resume=last"])
    with pytest.raises(ConfigError) as error:
        build_experiment(resumed, tmp_path / "unused", choices_of(resumed))
    message = str(error.value)
    assert f"the newest run {newest} has no checkpoints/last.ckpt" in message
    assert f"resume={tmp_path / first.name / '2000-01-01_00-00-00' / 'checkpoints' / 'last.ckpt'}" in message


def test_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    cfg = [*OVERRIDES, f"paths.runs={tmp_path}", "train.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    boxed = compose([*cfg, "conv=box"])
    build_experiment(boxed, tmp_path / "box-run", choices_of(boxed)).run()
    checkpoint = tmp_path / "box-run" / "checkpoints" / "last.ckpt"
    for overrides, difference in [
        (["conv=standard"], "conv=box (this run: conv=standard)"),
        (["conv=box", "net.widths=[16,32]"], "net.widths=[32, 64] (this run: [16, 32])"),
    ]:
        plain = compose([*cfg, *overrides, f"resume={checkpoint}"])
        with pytest.raises(ConfigError) as error:
            build_experiment(plain, tmp_path / "unused", choices_of(plain))
        assert "the checkpoint's run built another model: " + difference in str(error.value)
        assert "\n" not in str(error.value)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    for option in ("resume", "pretrained"):
        cfg = compose([*OVERRIDES, f"paths.runs={tmp_path}", f"{option}={broken}", *(["train.do=false"] if option == "pretrained" else [])])
        with pytest.raises(ConfigError, match=f"{option}={broken}: {broken} is not a PyTorch checkpoint$"):
            build_experiment(cfg, tmp_path / "run", choices_of(cfg))


def test_checkpoints_record_the_wandb_run(tmp_path):
    quick = [*QUICK, "train.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    cfg = compose([*quick, "logger=wandb", f"paths.runs={tmp_path}"])
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    experiment.run()
    run_id = experiment.trainer.logger.version
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["farconv_run"]["wandb_run_id"] == run_id

    resumed_cfg = compose([*quick[:-3], "train.epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=wandb", f"paths.runs={tmp_path}", f"resume={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"])
    resumed = build_experiment(resumed_cfg, tmp_path / "unused", choices_of(resumed_cfg))
    assert resumed.trainer.logger.version == run_id  # the same W&B run continues
    resumed.run()
    assert Path(resumed.trainer.logger.experiment.dir).is_dir()


def test_a_damaged_checkpoint_says_what_torch_could_not_read(tmp_path):
    from engine.resume import read_checkpoint

    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.ones(4)}}, whole)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(whole.read_bytes()[:-40])  # a zip archive cut short
    with pytest.raises(ConfigError, match=f"resume=x: {damaged} is not a readable PyTorch checkpoint \\("):
        read_checkpoint(damaged, "resume=x")
    assert read_checkpoint(whole, "resume=x")["state_dict"]["w"].sum() == 4
    legacy = tmp_path / "legacy.ckpt"  # torch's pre-1.6 format, which cannot be memory-mapped
    torch.save({"state_dict": {"w": torch.ones(4)}}, legacy, _use_new_zipfile_serialization=False)
    assert read_checkpoint(legacy, "resume=x")["state_dict"]["w"].sum() == 4
