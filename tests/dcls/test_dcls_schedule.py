"""`DclsSigmaSchedule`: SIG of Gaussian DCLS layers at given epochs and steps, frozen, a no-op
for other nets, and through a real (tiny) training run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from engine.cli import choices_of, compose
from engine.dcls_callbacks import DclsSigmaSchedule, scheduled_sigma
from engine.experiment import build_experiment
from layers.dcls import Dcls2d
from tests.conftest import QUICK


def net() -> nn.Sequential:
    # dilated (9, 5): P[0]/SIG[0] along x (5 taps), P[1]/SIG[1] along y (9 taps)
    return nn.Sequential(Dcls2d(2, 2, 3, dilated_kernel_size=(9, 5), groups=2, version="gauss"), Dcls2d(2, 2, 3, dilated_kernel_size=5, version="v1"))


def test_scheduled_sigma_is_geometric_then_constant():
    assert scheduled_sigma(8.0, 0.5, 0.0) == 8.0
    assert scheduled_sigma(8.0, 0.5, 0.5) == pytest.approx(2.0)
    assert scheduled_sigma(8.0, 0.5, 1.0) == pytest.approx(0.5)
    assert scheduled_sigma(8.0, 0.5, 3.0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "epoch, expected_x, expected_y",
    [(0, 2.5, 4.5), (1, math.sqrt(2.5 * 0.23), math.sqrt(4.5 * 0.23)), (2, 0.23, 0.23), (7, 0.23, 0.23)],
)
def test_epoch_schedule_sets_sig_of_gaussian_layers(epoch, expected_x, expected_y):
    model = net()
    schedule = DclsSigmaSchedule(decay_fraction=0.25)  # 8 epochs: decays over the first 2
    trainer = SimpleNamespace(max_epochs=8, current_epoch=epoch)
    schedule.setup(trainer, model, "fit")
    assert not model[0].SIG.requires_grad and model[1].SIG is None
    schedule.on_train_epoch_start(trainer, model)
    torch.testing.assert_close(model[0].SIG[0], torch.full((2, 1, 3), expected_x))
    torch.testing.assert_close(model[0].SIG[1], torch.full((2, 1, 3), expected_y))


def test_step_schedule_with_a_given_initial_value():
    model = net()
    schedule = DclsSigmaSchedule(initial=4.0, final=1.0, decay_fraction=0.5, interval="step")
    trainer = SimpleNamespace(estimated_stepping_batches=40, global_step=10)
    schedule.on_train_epoch_start(trainer, model)  # the epoch hook leaves a step schedule alone
    assert torch.all(model[0].SIG == 0.23)
    schedule.on_train_batch_start(trainer, model, None, 0)
    assert torch.all(model[0].SIG == 2.0)  # halfway through the 20-step decay


def test_nets_without_gaussian_dcls_layers_are_untouched():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), Dcls2d(1, 1, 2, dilated_kernel_size=5, version="max"))
    before = [p.clone() for p in model.parameters()]
    schedule = DclsSigmaSchedule()
    trainer = SimpleNamespace(max_epochs=None, current_epoch=3)  # not even a finite schedule is needed
    schedule.setup(trainer, model, "fit")
    schedule.on_train_epoch_start(trainer, model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(final=0), "final=0 must be > 0"),
        (dict(decay_fraction=1.5), "decay_fraction=1.5"),
        (dict(interval="batch"), "interval=batch must be one of epoch, step"),
        (dict(initial=-1.0), "initial=-1.0"),
    ],
)
def test_bad_schedules_fail_naming_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        DclsSigmaSchedule(**options)


@pytest.mark.slow  # a real three-epoch run (about 25 s on this machine)
def test_training_run_ends_on_the_floor_with_sig_out_of_the_optimiser(tmp_path):
    overrides = [
        *QUICK, f"paths.runs={tmp_path / 'runs'}", f"paths.data={tmp_path / 'data'}", "conv=dcls", "conv.version=gauss",
        "callbacks=dcls_sigma_schedule", "callbacks.dcls_sigma_schedule.decay_fraction=0.5", "callbacks.dcls_sigma_schedule.final=0.1", "train.epochs=3",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    ]  # fmt: skip
    cfg = compose(overrides)
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    experiment.run()
    layers = DclsSigmaSchedule.layers(experiment.task)
    assert layers and all(torch.all(layer.SIG == 0.1) for layer in layers)  # epoch 2 of 3, T = 1.5: at the floor
    optimised = {id(p) for group in experiment.trainer.optimizers[0].param_groups for p in group["params"]}
    assert not any(id(layer.SIG) in optimised for layer in layers)
