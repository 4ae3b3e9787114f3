"""Run folders from the command line: what a run leaves behind (config.yaml, a non-empty
farconv.log, no folder for a run that failed before training, none for a resumed run),
sweep job folders without paths in their names, and sweeps resumed by repeating their
`-m` command with `resume=last`; run names after the conv families of the built net."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from engine.cli import compose
from engine.nets import build_net
from engine.profiling import conv_families
from tests.conftest import COMMAND_TIMEOUT, REPO

TINY = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]


def run_command(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "run_experiment.py", *args], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    return result


def folders(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []


def test_a_run_its_resume_and_a_failed_run_leave_exactly_one_folder(tmp_path):
    runs = tmp_path / "runs"
    first = run_command(*TINY, "train.epochs=1", f"paths.runs={runs}")
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = folders(runs / "simple_cnn-standard-digits")
    log = (run_dir / "farconv.log").read_text()
    assert "Test accuracy: " in log and f"Run folder {run_dir}" in log
    for noise in ("GPU available: ", "TPU available: ", "Tip: ", "LeafSpec"):  # the log keeps what the console leaves out
        assert noise in log and noise not in first.stdout + first.stderr, noise
    assert "train:\n  do: true\n  epochs: 1\n" in (run_dir / "config.yaml").read_text()  # resolved config

    resumed = run_command(*TINY, "train.epochs=2", f"paths.runs={runs}", "resume=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert folders(runs / "simple_cnn-standard-digits") == [run_dir]  # continued in place, no empty folder
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert (run_dir / "farconv.log").read_text().count("Test accuracy: ") == 2
    assert f"resuming {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "farconv.log").read_text()
    assert "exists and is not empty" not in resumed.stdout + resumed.stderr  # expected when resuming
    assert "exists and is not empty" in (run_dir / "farconv.log").read_text()

    failed = run_command("dataset=cifar10", f"paths.data={tmp_path / 'empty'}", f"paths.runs={runs}")
    assert failed.returncode == 2 and "CIFAR-10 not found" in failed.stderr
    assert not (runs / "simple_cnn-standard-cifar10").exists()  # nothing left behind


def test_sweep_folders_leave_paths_out_and_a_repeated_sweep_resumes_every_job(tmp_path):
    runs = tmp_path / "runs"
    sweep = ["-m", *TINY, "seed=0,1", f"paths.runs={runs}", f"paths.data={tmp_path / 'data'}"]
    first = run_command(*sweep, "train.epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    (sweep_dir,) = folders(runs / "multirun")
    jobs = folders(sweep_dir)
    assert [job.name.partition(",seed=")[2] for job in jobs] == ["0,train.epochs=1", "1,train.epochs=1"]
    assert all("paths." not in job.name and job.parent == sweep_dir for job in jobs)  # no paths, so no nested folders
    assert all("trainer.limit_train_batches=3" in job.name and "++" not in job.name for job in jobs)  # as typed
    command = next(line for line in (jobs[0] / "farconv.log").read_text().splitlines() if "command: " in line)
    assert " trainer.limit_train_batches=3 " in command and "++" not in command

    again = run_command(*sweep, "train.epochs=1", "resume=last")
    assert again.returncode == 0, again.stderr[-3000:]
    assert folders(runs / "multirun") == [sweep_dir]  # every job continued its own folder
    for job in jobs:
        assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
        assert (job / "farconv.log").read_text().count("Test accuracy: ") == 2


def test_runs_are_named_after_the_conv_families_the_built_net_contains():
    cfg = compose(["experiment=box_mnist"])  # conv=standard, but the net is built around a box convolution
    assert cfg.name == "box_mnist-box+standard-mnist" and cfg.hydra.run.dir.startswith(f"runs/{cfg.name}/")
    assert cfg.name.split("-")[1] == "+".join(conv_families(build_net(cfg)))  # what run_profiler.py reports
    assert compose(["net=resnet20", "dataset=cifar10", "conv=box"]).name == "resnet20-box+standard-cifar10"
    assert compose(["net=boxenet", "dataset=cityscapes", "conv=checkered"]).name == "boxenet-checkered-cityscapes"  # cannot be built

    state = torch.get_rng_state()
    assert compose(["net=simple_cnn", "dataset=digits", "net.widths=[3,5]"]).name == "simple_cnn-standard-digits"
    assert torch.equal(torch.get_rng_state(), state)  # naming a run builds its net without drawing random numbers
