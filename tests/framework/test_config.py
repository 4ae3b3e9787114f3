"""Configuration: every group option composes, and bad input stops with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from engine.cli import CONFIG_DIR, check_command_line, compose
from engine.config import ConfigError
from engine.experiment import flatten_config
from tests.conftest import COMMAND_TIMEOUT, REPO


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


GROUPS = ["net", "dataset", "conv", "optimizer", "scheduler", "trainer", "logger", "callbacks", "task", "experiment"]


@pytest.mark.parametrize("group, option", [(group, option) for group in GROUPS for option in group_options(group)])
def test_every_group_option_composes_and_resolves(group, option):
    cfg = compose([f"{group}={option}"])
    assert cfg.hydra.runtime.choices[group] == option
    assert flatten_config(cfg)  # every interpolation resolves


def test_slurm_launcher_composes():
    cfg = compose(["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == 4


@pytest.mark.parametrize("option", group_options("optimizer"))
def test_optimizers_instantiate(option):
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = instantiate(compose([f"optimizer={option}"]).optimizer)([{"params": [parameter]}])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)


@pytest.mark.parametrize("option", group_options("scheduler"))
def test_schedulers_instantiate_and_step(option):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = instantiate(compose([f"scheduler={option}"]).scheduler)(optimizer, total_steps=100, steps_per_epoch=10)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    assert 0.0 <= optimizer.param_groups[0]["lr"] <= 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["net=nonexistent"], "net=nonexistent does not exist; available net options: "),
        (["train.epochz=3"], "unknown config key 'train.epochz'; keys under 'train': accumulate_grad_batches, batch_size"),
        (["epochs=3"], "unknown config key 'epochs'; keys under '<top level>'"),
        (["train.epochs=abc"], "train.epochs: Value 'abc' of type 'str' could not be converted to Integer"),
        (["train.epochs=-1"], "train.epochs=-1 is out of range: must be >= 0"),
        (["train.epochs=0"], "train.epochs=0 trains nothing, and nothing gives weights"),
        (["cross_res.interpolation=cubic"], "cross_res.interpolation=cubic is out of range: must be one of bilinear, nearest"),
        (["train.lr=-0.1"], "train.lr=-0.1 is out of range: must be > 0"),
        (["dataset.num_workers=-2"], "dataset.num_workers=-2 is out of range: must be >= 0"),
        (["scheduler=multistep", "train.epochs=100"], "scheduler.milestones=[100, 150] must be epochs before train.epochs=100"),
        (["profile.device=tpu"], "profile.device=tpu is out of range: must be one of auto, cpu, cuda"),
        (["net=enet", "conv=box", "dataset=cityscapes"], "conv=box has no effect on net=enet"),
        (["net=convnext_t_dcls", "dataset=imagenet", "conv=box"], "conv=box has no effect on net=convnext_t_dcls"),
        (["conv=dcls", "conv.version=v9"], "conv.version=v9 is out of range: must be one of v0, v1, max, gauss"),
        (["net=convnext_t_dcls", "dataset=imagenet", "net.conv.kernel_count=400"], "net.conv.kernel_count=400 is out of range"),
        (["resume=last", "pretrained=x.ckpt"], "resume and pretrained are exclusive"),
        (["train.lr=[1,"], "train.lr=[1,"),
    ],
)
def test_bad_command_lines_raise_one_clear_config_error(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_command_line(overrides)
    assert message in str(error.value)


def test_sweeps_are_checked_by_their_plain_overrides():
    check_command_line(["seed=0,1,2", "train.epochs=3"])
    with pytest.raises(ConfigError, match="train.batch_size=0"):
        check_command_line(["seed=0,1", "train.batch_size=0"])


def test_unknown_net_fails_with_one_line_listing_the_nets():
    result = subprocess.run(
        [sys.executable, "run_experiment.py", "net=nonexistent"], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: net=nonexistent does not exist; available net options: ")
    for net in group_options("net"):
        assert net in lines[0]
    assert not (REPO / "runs" / "nonexistent-digits").exists()  # stopped before Hydra made a run folder
