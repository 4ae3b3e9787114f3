"""Every listed failure is one line (exit status 2 from the command line) naming what is
wrong and what to do: sweeps checked before any job, damaged data files, downloads
without network, bad checkpoints, W&B without a key, test-only runs without weights."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from datasets import CIFARDataModule, MNISTDataModule
from engine.cli import check_command_line, choices_of, compose
from engine.config import ConfigError
from engine.experiment import build_experiment
from tests.conftest import COMMAND_TIMEOUT, QUICK, REPO
from tests.framework.fabricate import write_mnist

COMMON = {"batch_size": 8, "num_workers": 0}


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env={**os.environ, **(env or {})}
    )


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-3000:]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lr=1e-3,abc"], "train.lr: Value 'abc' of type 'str' could not be converted to Float"),
        (["net=simple_cnn,resnet99"], "net=resnet99 does not exist; available net options: "),
        (["train.epoch=1,2"], "unknown config key 'train.epoch'; keys under 'train': "),
        (["train.lr=1e-3,-1"], "train.lr=-1.0 is out of range: must be > 0"),
        (["seed=0,1", "train.batch_size=8,0"], "train.batch_size=0 is out of range: must be >= 1"),
    ],
)
def test_every_job_of_a_sweep_is_checked_before_the_first_starts(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_command_line(overrides, multirun=True)
    assert message in str(error.value)


def test_a_sweep_without_multirun_is_refused():
    with pytest.raises(ConfigError, match="train.lr=1,2 gives several values: add -m"):
        check_command_line(["train.lr=1,2"], multirun=False)
    assert check_command_line(["seed=0,1", "train.lr=1e-3,3e-3"], multirun=True) == 4


def test_sweep_with_a_bad_job_stops_before_any_job_runs(tmp_path):
    result = run_command("run_experiment.py", "-m", "train.lr=1e-3,-1", f"paths.runs={tmp_path}")
    assert_one_line_error(result, "train.lr=-1.0 is out of range: must be > 0")
    assert not any(tmp_path.iterdir())  # no job started, no folder made


def test_trainer_takes_any_lightning_trainer_argument():
    cfg = compose(["trainer.limit_train_batches=20", "trainer.max_epochs=2"])
    assert cfg.trainer.limit_train_batches == 20 and cfg.trainer.max_epochs == 2
    with pytest.raises(ConfigError, match="unknown config key 'trainer.limit_train_batchez': pytorch_lightning.Trainer takes .*limit_train_batches"):
        check_command_line(["trainer.limit_train_batchez=20"])


def test_test_only_without_weights_is_refused():
    with pytest.raises(ConfigError, match="train.do=false tests without training, but nothing gives weights: pass pretrained, pretrained_wandb or resume"):
        check_command_line(["train.do=false"])


def mnist_module(root) -> MNISTDataModule:
    return MNISTDataModule(root=str(root), num_classes=10, in_channels=1, input_size=[28, 28], **COMMON)


@pytest.mark.parametrize(
    "file, damage, message",
    [
        ("train-images-idx3-ubyte", lambda data: data[: len(data) // 2], "but its header announces shape (40, 28, 28) = 31,376 bytes (truncated or damaged)"),
        ("t10k-labels-idx1-ubyte", lambda data: b"", "0 bytes, shorter than the 8-byte IDX header (empty or truncated)"),
        ("train-labels-idx1-ubyte", lambda data: os.urandom(len(data)) .replace(b"\0", b"\1"), "not an IDX file of 1-D unsigned bytes"),
    ],
    ids=["truncated-images", "empty-labels", "random-labels"],
)
def test_damaged_mnist_file_is_named_with_what_is_wrong(tmp_path, file, damage, message):
    write_mnist(tmp_path)
    mnist_module(tmp_path).setup("fit")  # intact files read fine
    path = tmp_path / "MNIST" / "raw" / file
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError) as error:
        datamodule = mnist_module(tmp_path)
        datamodule.setup("fit")
    assert f"corrupt MNIST file {path}: " in str(error.value) and message in str(error.value)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_mnist_download_without_network_names_the_hosts_and_the_folder(tmp_path, no_network, capsys):
    datamodule = MNISTDataModule(root=str(tmp_path), num_classes=10, in_channels=1, input_size=[28, 28], download=True, **COMMON)
    with pytest.raises(ConnectionError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert "dataset.download=true: cannot download MNIST from ossci-datasets.s3.amazonaws.com" in message
    assert f"into {tmp_path}/MNIST/raw/ by hand" in message and "\n" not in message


def test_cifar_download_without_network_names_the_host_and_the_folder(tmp_path, no_network):
    datamodule = CIFARDataModule(root=str(tmp_path), num_classes=10, in_channels=3, input_size=[32, 32], download=True, **COMMON)
    with pytest.raises(ConnectionError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert message.startswith("dataset.download=true: cannot reach www.cs.toronto.edu (")
    assert f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz by hand and unpack it into {tmp_path}/" in message


def test_wandb_online_without_an_api_key_is_one_line(tmp_path):
    cfg = compose([*QUICK, "logger=wandb", "logger.wandb.mode=online", f"paths.runs={tmp_path}"])
    with pytest.raises(ConfigError, match="logger.wandb.mode=online needs a W&B API key: run `wandb login`"):
        build_experiment(cfg, tmp_path / "run", choices_of(cfg))


def test_command_line_errors_are_one_line_with_status_2(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    result = run_command("run_experiment.py", f"resume={broken}", f"paths.runs={tmp_path / 'runs'}")
    assert_one_line_error(result, f"resume={broken}: {broken} is not a PyTorch checkpoint")
    assert result.stderr.strip() == f"error: resume={broken}: {broken} is not a PyTorch checkpoint"  # no advice on re-saving it
    assert not (tmp_path / "runs").exists()  # no folder left behind, paths.runs included


def test_a_rejected_sweep_leaves_no_folder_and_keeps_a_runs_folder_that_existed(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    result = run_command("run_experiment.py", "-m", "seed=0,1", f"resume={broken}", f"paths.runs={tmp_path / 'runs'}")
    assert result.returncode == 2 and not (tmp_path / "runs").exists(), result.stderr[-2000:]
    (tmp_path / "kept").mkdir()
    result = run_command("run_experiment.py", f"resume={broken}", f"paths.runs={tmp_path / 'kept'}")
    assert result.returncode == 2 and (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
