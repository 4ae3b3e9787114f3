"""`callbacks=ema`: the averaged weights are validated, checkpointed as the `state_dict`,
tested, and restored exactly (with the trained weights) when a run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from tests.conftest import QUICK

# digits, a constant rate (so a 1-epoch run extended to 2 follows the 2-epoch run's schedule)
OVERRIDES = [*QUICK, "callbacks=ema", "callbacks.ema.decay=0.9", "scheduler=constant", "deterministic=true", "net.dropout=0.3",
             "trainer.limit_train_batches=6", "trainer.limit_val_batches=2"]  # fmt: skip


def run(tmp_path: Path, *overrides: str):
    cfg = compose([*OVERRIDES, f"paths.runs={tmp_path}", *overrides])
    run_dir = tmp_path / "unused" if cfg.resume else tmp_path / cfg.name / "2000-01-01_00-00-00"  # resume: the earlier run's folder
    experiment = build_experiment(cfg, run_dir, choices_of(cfg))
    return experiment, experiment.run()


def last_checkpoint(experiment) -> dict:
    return torch.load(experiment.run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def assert_same(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        torch.testing.assert_close(value, second[key], rtol=0, atol=0, msg=key)


def test_a_resumed_run_continues_the_average_exactly(tmp_path):
    uninterrupted, _ = run(tmp_path / "a", "train.epochs=2")
    run(tmp_path / "b", "train.epochs=1")
    resumed, _ = run(tmp_path / "b", "train.epochs=2", "resume=last")
    expected, got = last_checkpoint(uninterrupted), last_checkpoint(resumed)
    assert got["global_step"] == expected["global_step"] == 12
    assert_same(got["state_dict"], expected["state_dict"])  # the average
    assert_same(got["current_model_state"], expected["current_model_state"])  # the trained weights
    assert int(got["averaging_state"]["n_averaged"]) == 12
    assert any((got["state_dict"][key] != got["current_model_state"][key]).any() for key in got["state_dict"])


def test_the_test_reports_the_averaged_weights_of_the_best_checkpoint(tmp_path):
    experiment, metrics = run(tmp_path, "train.epochs=1")
    best = torch.load(experiment.best_checkpoint.best_model_path, weights_only=True)
    assert_same({key: value for key, value in experiment.task.state_dict().items()}, best["state_dict"])
    assert metrics == experiment.test(experiment.best_checkpoint.best_model_path)


@pytest.mark.parametrize("option, message", [("callbacks.ema.decay=1.0", "callbacks.ema.decay=1.0 must be in (0, 1)"),
                                             ("callbacks.ema.update_starting_at_step=-1", "update_starting_at_step=-1 must be >= 0")])
def test_bad_options_are_named(tmp_path, option, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(tmp_path, option)
