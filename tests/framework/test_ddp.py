"""Multi-process training: 2-process CPU DDP (ddp_spawn, gloo) end to end."""

from __future__ import annotations

import pytest

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from tests.conftest import QUICK

DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn", "trainer.sync_batchnorm=false"]


@pytest.mark.slow
def test_two_process_cpu_ddp_trains_and_tests(tmp_path):
    cfg = compose([*QUICK, *DDP_ON_CPU, "train.epochs=2", f"paths.runs={tmp_path}"])
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    metrics = experiment.run()
    assert experiment.trainer.world_size == 2
    assert metrics["test/acc"] > 0.5
    assert list((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
