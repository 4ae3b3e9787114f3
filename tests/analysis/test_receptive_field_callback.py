"""`callbacks=receptive_field`: learned extents (one interface for every family) and ERF radii."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from engine.receptive_field import ReceptiveFieldMonitor, learned_extent_layers
from layers.box import BoxConv2d
from tests.conftest import QUICK


def test_box_conv_reports_box_heights_and_widths_in_pixels():
    layer = BoxConv2d(2, 1, 16, 16)
    layer.set_box_coordinates(torch.tensor([[-1.0], [-2.5]]), torch.tensor([[1.0], [0.5]]), torch.tensor([[0.0], [-3.0]]), torch.tensor([[4.0], [3.0]]))
    extent = layer.learned_extent()
    torch.testing.assert_close(extent["height"], torch.tensor([3.0, 4.0]))  # x_max - x_min + 1
    torch.testing.assert_close(extent["width"], torch.tensor([5.0, 7.0]))


class Spread(nn.Module):
    """Any module with `learned_extent()` is picked up: the callback knows no family."""

    def learned_extent(self) -> dict[str, torch.Tensor]:
        return {"spread": torch.tensor([1.0, 3.0])}


def test_extent_metrics_come_from_the_shared_interface_only():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), Spread())
    assert [name for name, _ in learned_extent_layers(net)] == ["1"]
    metrics = ReceptiveFieldMonitor(histograms=False).extent_metrics(trainer=None, net=net)
    assert metrics == {"extent/1/spread_mean": 2.0, "extent/1/spread_min": 1.0, "extent/1/spread_max": 3.0}


@pytest.mark.parametrize(("key", "value"), [("every_n_epochs", 0), ("erf_every_n_epochs", -1), ("erf_samples", 0)])
def test_bad_settings_are_named(key, value):
    with pytest.raises(ValueError, match=f"{key}={value}"):
        ReceptiveFieldMonitor(**{key: value})


def test_training_logs_extents_histograms_and_erf_radii(tmp_path):
    from tests.framework.wandb_log import read_wandb_log

    overrides = [*QUICK, "logger=wandb_csv", "conv=box", "callbacks=receptive_field", "train.epochs=2", "+trainer.limit_train_batches=2", f"paths.runs={tmp_path}"]
    cfg = compose(overrides)
    build_experiment(cfg, tmp_path / "run", choices_of(cfg)).run()
    rows = list(csv.DictReader(next((tmp_path / "run" / "csv").glob("version_*/metrics.csv")).open()))
    logged = [row for row in rows if row.get("erf/r50")]
    assert len(logged) == 2, "once per validation epoch (no sanity check)"
    assert float(logged[0]["extent/features.0.box/width_min"]) > 1.0
    assert 0 < float(logged[-1]["erf/r50"]) <= float(logged[-1]["erf/r90"])
    (folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    history = read_wandb_log(next(folder.glob("run-*.wandb"))).history
    histograms = [row for row in history if row.get("extent/features.0.box/height/_type") == "histogram"]
    assert histograms, "W&B gets the extents as histograms"  # (the offline event log may still lack the last epoch's row)
    assert sum(histograms[0]["extent/features.0.box/height/values"]) == 4 * 1  # C*F = 1 input channel x 4 boxes

