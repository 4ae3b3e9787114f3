"""Loggers: a real offline W&B run (checked on disk), the CSV logger, and the rules that
keep W&B from hanging on a machine without network or account."""

from __future__ import annotations

import csv
import socket
import time
from pathlib import Path

import pytest
import yaml

from engine.cli import choices_of, compose
from engine.experiment import build_experiment
from engine.loggers import host_reachable, resolve_wandb_mode
from tests.conftest import QUICK
from tests.framework.wandb_log import read_wandb_log


def run(overrides, tmp_path):
    cfg = compose([*QUICK, "train.epochs=1", f"paths.runs={tmp_path}", *overrides])
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    return experiment, experiment.run()


def wandb_service_processes() -> list[int]:
    """Process ids of this process's W&B service children (`wandb-core`), read from /proc."""
    children = []
    for listing in Path("/proc/self/task").glob("*/children"):
        children += [int(pid) for pid in listing.read_text().split()]
    named = []
    for pid in children:
        try:
            if "wandb" in Path(f"/proc/{pid}/comm").read_text():
                named.append(pid)
        except FileNotFoundError:  # exited meanwhile
            continue
    return named


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_offline_wandb_run_is_complete_on_disk_when_the_experiment_returns(tmp_path):
    """`run.finish()` only asks W&B's service to close the run; the service writes the rest of
    the log when it closes the stream, later (on a loaded machine the run record was still
    missing when the test read the file). The experiment must wait for that: once it
    returns, no W&B service of ours is left holding the file open."""
    run(["logger=wandb"], tmp_path)
    assert wandb_service_processes() == []


def test_offline_wandb_run_writes_config_history_and_tags(tmp_path):
    experiment, metrics = run(["logger=wandb", "logger.wandb.tags=[unit-test]", "logger.wandb.group=tests"], tmp_path)
    folders = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, "auto mode without an API key must run offline, in the run folder"
    log = read_wandb_log(next(folders[0].glob("run-*.wandb")))
    assert log.run.project == "farconv" and list(log.run.tags) == ["unit-test"] and log.run.run_group == "tests"
    assert log.run.display_name == "simple_cnn-standard-digits"
    assert log.config["train.lr"] == pytest.approx(3e-3)  # the flattened, resolved config
    assert log.config["net._target_"] == "models.simple_cnn.SimpleCNN"
    logged = {key for row in log.history for key in row}
    assert {"train/loss_step", "val/acc", "val/loss", "lr-AdamW"} <= logged
    test_rows = [row for row in log.history if "test/acc" in row]
    assert test_rows and test_rows[-1]["test/acc"] == pytest.approx(metrics["test/acc"])


def test_csv_logger_writes_metrics_and_hyperparameters(tmp_path):
    _, metrics = run(["logger=csv"], tmp_path)
    version = tmp_path / "run" / "csv" / "version_0"
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    test_rows = [row for row in rows if row.get("test/acc")]
    assert float(test_rows[-1]["test/acc"]) == pytest.approx(metrics["test/acc"])
    hyperparameters = yaml.safe_load((version / "hparams.yaml").read_text())
    assert hyperparameters["train.epochs"] == 1


def test_wandb_mode_rules(monkeypatch):
    assert resolve_wandb_mode("auto", debug=False) == "offline"  # no API key here
    assert resolve_wandb_mode("auto", debug=True) == "offline"
    assert resolve_wandb_mode("disabled", debug=False) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_wandb_mode("offline", debug=False) == "online"  # the environment wins
    with pytest.raises(ValueError, match="logger.wandb.mode='sometimes' is not one of auto, online, offline, disabled"):
        resolve_wandb_mode("sometimes", debug=False)


def test_wandb_goes_online_only_with_a_key_and_a_reachable_host(monkeypatch, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    assert resolve_wandb_mode("auto", debug=False) == "offline"  # reachable, but no key
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login user password 0123456789\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    # the probe uses port 443 of the W&B host; loopback:443 is closed, so still offline
    assert resolve_wandb_mode("auto", debug=False) == "offline"
    server.close()


def test_host_probe_answers_quickly_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert host_reachable("127.0.0.1", port, timeout=2.0)
    server.close()
    start = time.perf_counter()
    assert not host_reachable("127.0.0.1", port, timeout=60.0)  # closed port: refused at once,
    assert time.perf_counter() - start < 30.0  # not after the timeout (a wide margin for a busy machine)


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path):
    from engine.loggers import RunContext, wandb_logger

    logger = wandb_logger(RunContext(run_dir=tmp_path, name="x", config={}), project="farconv", mode="offline")
    assert "anonymous" not in logger._wandb_init  # wandb warns "The anonymous setting has no effect" otherwise


def test_a_seed_sweep_shares_one_wandb_group_per_setting(monkeypatch):
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from engine.loggers import sweep_group

    assert sweep_group("net-standard-digits") is None  # not a multirun
    groups = set()
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    for seed in (0, 1, 2):
        task = [f"seed={seed}", "++trainer.max_steps=5", "paths.runs=/tmp/x", "kernel.regularize.target=gabor"]
        job = SimpleNamespace(mode=RunMode.MULTIRUN, overrides=SimpleNamespace(task=task))
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda job=job: job))
        groups.add(sweep_group("net-flex-mnist"))
    assert groups == {"net-flex-mnist:kernel.regularize.target=gabor,trainer.max_steps=5"}
