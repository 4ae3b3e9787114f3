"""run_crossres.py end to end on scikit-learn's digits at tiny sizes: the phases, one run."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from engine.cli import choices_of, compose
from engine.config import ConfigError
from engine.crossres import batch_norm_statistics_from, cross_resolution, resize
from tests.conftest import COMMAND_TIMEOUT, QUICK, REPO

TINY = [*QUICK, "logger=csv", "net=simple_cnn", "dataset=digits", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1"]


def run(tmp_path, *overrides):
    cfg = compose([*TINY, f"paths.runs={tmp_path}", *overrides])
    run_dir = tmp_path / "run"
    return cross_resolution(cfg, run_dir, choices_of(cfg)), run_dir


def csv_header(run_dir):
    with open(run_dir / "csv" / "version_0" / "metrics.csv", newline="") as file:
        return next(csv.reader(file))


def test_three_phases_log_to_one_run(tmp_path):
    metrics, run_dir = run(tmp_path, "cross_res.source_res=4", "cross_res.target_res=8", "train.epochs=1", "cross_res.finetune_epochs=1")
    assert {"source/test/acc", "ootb/test/acc", "target/test/acc"} <= set(metrics)
    header = csv_header(run_dir)
    for key in ("source/train/loss_step", "source/val/acc", "source/test/acc", "ootb/test/acc", "target/train/loss_step", "target/test/acc"):
        assert key in header
    assert [path.name for path in (run_dir / "csv").iterdir()] == ["version_0"]  # one CSV run, not one per phase
    log_text = (run_dir / "farconv.log").read_text()
    assert "source phase: inputs resized to 4x4" in log_text and "out-of-the-box and fine-tuning phases: inputs resized to 8x8" in log_text
    # one labelled table per phase, then one summary of the three
    titles = ["source (trained), test at 4:", "out of the box, test at 8:", "fine-tuned (target), test at 8:"]
    positions = [log_text.index(title) for title in titles]
    assert positions == sorted(positions)
    summary = log_text[log_text.rindex("phase "):].splitlines()
    assert summary[0].split()[:2] == ["phase", "resolution"]
    assert [line.split("INFO farconv: ")[-1][:20].strip() for line in summary[1:4]] == ["source (trained)", "out of the box", "fine-tuned (target)"]


@pytest.mark.parametrize("conv", ["flex", "ckconv", "standard"])
@pytest.mark.parametrize("net, dataset, source, target", [("flextcn2", "mnist1d", 20, 40), ("flexnet3", "digits", 4, 8)])
def test_every_family_runs_the_three_phases_in_1d_and_2d(tmp_path, conv, net, dataset, source, target):
    metrics, run_dir = run(
        tmp_path, f"net={net}", f"dataset={dataset}", f"conv={conv}", "net.hidden_channels=4", "net.num_blocks=1", "net.block_width_factors=[]",
        f"cross_res.source_res={source}", f"cross_res.target_res={target}", "train.epochs=1", "cross_res.finetune_epochs=1",
        "trainer.limit_test_batches=1", "kernel.net.hidden_channels=4",
    )  # fmt: skip
    assert {"source/test/acc", "ootb/test/acc", "target/test/acc"} <= set(metrics)
    log_text = (run_dir / "farconv.log").read_text()
    shape = f"{target}" if dataset == "mnist1d" else f"{target}x{target}"
    assert f"inputs resized to {shape}" in log_text
    assert ("re-sampled the continuous kernels" in log_text) == (conv != "standard")


def test_pretrained_with_zero_epochs_skips_source_training(tmp_path):
    first, first_dir = run(tmp_path / "first", "cross_res.source_res=4", "cross_res.target_res=8", "train.epochs=1")
    checkpoint = next((first_dir / "checkpoints").glob("best-*.ckpt"))
    metrics, run_dir = run(tmp_path / "second", "cross_res.source_res=4", "cross_res.target_res=8", "train.epochs=0", f"pretrained={checkpoint}")
    header = csv_header(run_dir)
    assert not any(key.startswith("source/train") for key in header) and "target/test/acc" not in metrics  # finetune_epochs=0
    assert metrics["source/test/acc"] == pytest.approx(first["source/test/acc"])
    assert metrics["ootb/test/acc"] == pytest.approx(first["ootb/test/acc"])


def test_bn_recalibration_adds_a_phase_to_the_run(tmp_path):
    metrics, run_dir = run(tmp_path, "net=flexnet3", "conv=flex", "net.hidden_channels=4", "net.num_blocks=1", "net.block_width_factors=[]",
                           "kernel.net.hidden_channels=4", "cross_res.source_res=4", "cross_res.target_res=8", "train.epochs=1",
                           "cross_res.bn_recalibration_batches=2")  # fmt: skip
    assert {"ootb/test/acc", "ootb_bn/test/acc"} <= set(metrics)
    assert "ootb_bn/test/acc" in csv_header(run_dir)
    log_text = (run_dir / "farconv.log").read_text()
    assert "ootb_bn phase: the statistics of 3 BatchNorm layers re-estimated on 2 training batches (training transforms) at 8" in log_text
    assert "ootb, BN re-est." in log_text[log_text.rindex("phase "):]


def test_batch_norm_statistics_are_re_estimated_inside_the_block_and_restored_after():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Dropout(0.5), torch.nn.BatchNorm2d(3),
                              torch.nn.BatchNorm2d(3, track_running_stats=False))  # fmt: skip
    norm, untracked = net[2], net[3]
    trained = {name: buffer.clone() for name, buffer in norm.named_buffers()}
    net.train()
    net[0].eval()  # a mixed state comes back as it was
    batches = [(3 + 2 * torch.randn(8, 1, 6, 6), None), (3 + 2 * torch.randn(4, 1, 6, 6), None), (torch.zeros(8, 1, 6, 6), None)]
    with batch_norm_statistics_from(net, batches, max_batches=2) as (count, used):
        assert (count, used) == (1, 2) and not any(module.training for module in (net, net[1], norm, untracked))
        # dropout was off: the statistics are those of the convolution's outputs themselves,
        # an equal-weight average over the batches (not a momentum average)
        batch_means = torch.stack([net[0](inputs).mean((0, 2, 3)) for inputs, _ in batches[:2]]).detach()
        torch.testing.assert_close(norm.running_mean, batch_means.mean(0))
        assert int(norm.num_batches_tracked) == 2
    for name, buffer in norm.named_buffers():
        torch.testing.assert_close(buffer, trained[name])
    assert [module.training for module in net.modules()] == [True, False, True, True, True] and norm.momentum == 0.1
    # a shuffling loader draws from the global generator; the block leaves it as it was
    shuffled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 1, 6, 6)), batch_size=4, shuffle=True)
    rng = torch.get_rng_state()
    with batch_norm_statistics_from(net, shuffled, max_batches=3) as (_, used):
        assert used == 3
    assert torch.equal(torch.get_rng_state(), rng)


def test_resize_shapes_and_identity():
    image = torch.rand(3, 8, 8)
    assert resize(image, (8, 8), "bilinear") is image
    assert resize(image, (4, 4), "bilinear").shape == (3, 4, 4)
    assert resize(torch.rand(1, 40), (80,), "bilinear").shape == (1, 80)
    torch.testing.assert_close(resize(torch.ones(2, 5, 5), (10, 10), "nearest"), torch.ones(2, 10, 10))


def test_missing_resolution_fails_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cross_res.source_res is required"):
        run(tmp_path, "cross_res.target_res=8", "train.epochs=1")


@pytest.mark.slow
def test_command_line_rejects_zero_epochs_without_weights(tmp_path):
    result = subprocess.run(
        [sys.executable, "run_crossres.py", "cross_res.source_res=4", "cross_res.target_res=8", "train.epochs=0", f"paths.runs={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 2 and result.stderr.strip() == "error: train.epochs=0 trains nothing, and nothing gives weights: pass pretrained, pretrained_wandb or resume"


@pytest.mark.slow
def test_a_run_that_stops_before_its_first_phase_leaves_no_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "run_crossres.py", "dataset=mnist", f"paths.data={tmp_path / 'empty'}", "cross_res.source_res=14",
         "cross_res.target_res=28", "train.epochs=1", f"paths.runs={tmp_path / 'runs'}"],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))
