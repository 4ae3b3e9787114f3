"""Resuming: a run killed mid-epoch and resumed with `resume=last` ends with the same
weights as an uninterrupted run (CPU, deterministic)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from engine.checkpointing import run_identity
from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from tests.conftest import QUICK, REPO

# digits: 1,293 training images = 21 batches of 64 per epoch; last.ckpt every 5 steps.
OVERRIDES = [
    *QUICK,
    "train.epochs=2",
    "deterministic=true",
    "callbacks.last_checkpoint.every_n_train_steps=5",
    "net.dropout=0.3",  # exercises the restored RNG state
]
KILL_AT_STEP = 27  # epoch 1, batch 6: the newest checkpoint (step 25) is mid-epoch

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


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    uninterrupted_cfg = compose([*OVERRIDES, f"paths.runs={tmp_path / 'a'}"])
    uninterrupted = build_experiment(uninterrupted_cfg, tmp_path / "a" / "digits" / "run", choices_of(uninterrupted_cfg))
    uninterrupted.run()

    runs = tmp_path / "b"
    cfg = [*OVERRIDES, f"paths.runs={runs}"]
    run_dir = runs / compose(cfg).name / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(KILL_AT_STEP), str(run_dir), *cfg], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr[-3000:]  # died by SIGKILL, mid-epoch
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 25
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))  # no half-written checkpoint left behind

    resumed_cfg = compose([*cfg, "resume=last"])
    resumed = build_experiment(resumed_cfg, tmp_path / "unused", choices_of(resumed_cfg))
    assert resumed.resume_from == run_dir / "checkpoints" / "last.ckpt"
    assert resumed.run_dir == run_dir  # continues in the original folder
    resumed.run()

    assert resumed.trainer.global_step == uninterrupted.trainer.global_step == 42
    expected = net_weights(uninterrupted)
    for key, value in net_weights(resumed).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_checkpoints_record_the_wandb_run(tmp_path):
    cfg = compose([*OVERRIDES[:-2], "train.epochs=1", "logger=wandb", f"paths.runs={tmp_path}"])
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    experiment.run()
    run_id = experiment.trainer.logger.version
    assert run_identity(tmp_path / "run" / "checkpoints" / "last.ckpt")["wandb_run_id"] == run_id

    resumed_cfg = compose([*OVERRIDES[:-2], "train.epochs=2", "logger=wandb", f"paths.runs={tmp_path}", f"resume={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"])
    resumed = build_experiment(resumed_cfg, tmp_path / "unused", choices_of(resumed_cfg))
    assert resumed.trainer.logger.version == run_id  # the same W&B run continues
    resumed.run()
    assert Path(resumed.trainer.logger.experiment.dir).is_dir()
