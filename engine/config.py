"""The typed schema of the top-level configuration and the checks run before any work.

`cfg/config.yaml` lists `schema` first in its defaults, so Hydra types every key declared
here (`train.epochs=abc` fails at composition) and struct mode rejects unknown keys.
`validate` adds the range and cross-group checks; every failure is a `ConfigError` whose
message names the key, the bad value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration or input problem the user must fix; reported as one line."""


@dataclass
class TrainConfig:
    do: bool = True  # False: test only (use with pretrained / pretrained_wandb / resume)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # gradient-norm clipping; 0 disables it
    accumulate_grad_batches: int = 1


@dataclass
class TestConfig:
    before_train: bool = False  # also evaluate the test set before training


@dataclass
class PathsConfig:
    data: str = "data"
    runs: str = "runs"


@dataclass
class ProfileConfig:
    batch_size: int = 1
    warmup: int = 3
    repeats: int = 10
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class ExperimentSchema:
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    name: str = MISSING
    seed: int = 0
    deterministic: bool = False
    debug: bool = False  # no W&B upload, tiny run limits, full tracebacks
    pretrained: Optional[str] = None  # checkpoint file whose weights start the run
    pretrained_strict: bool = True
    pretrained_wandb: Optional[str] = None  # W&B artifact reference, e.g. entity/project/model-abc:v3
    resume: Optional[str] = None  # "last" or a checkpoint path: continue that run
    net: Any = MISSING
    dataset: Any = MISSING
    task: Any = MISSING
    conv: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: Any = MISSING
    logger: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)


def register_schema() -> None:
    """Make `schema` available to the defaults list of `cfg/config.yaml`."""
    ConfigStore.instance().store(name="schema", node=ExperimentSchema)


Rule = Callable[[Any], Optional[str]]


def at_least(low: float) -> Rule:
    return lambda value: None if value >= low else f"must be >= {low}"


def greater_than(low: float) -> Rule:
    return lambda value: None if value > low else f"must be > {low}"


def one_of(*allowed: str) -> Rule:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


RANGES: dict[str, Rule] = {
    "train.epochs": at_least(1),
    "train.batch_size": at_least(1),
    "train.lr": greater_than(0),
    "train.weight_decay": at_least(0),
    "train.grad_clip": at_least(0),
    "train.accumulate_grad_batches": at_least(1),
    "profile.batch_size": at_least(1),
    "profile.warmup": at_least(0),
    "profile.repeats": at_least(1),
    "profile.device": one_of("auto", "cpu", "cuda"),
    "dataset.num_workers": at_least(0),
}


def validate(cfg: DictConfig, choices: Mapping[str, Any]) -> None:
    """Check ranges and the combination of chosen config groups.

    Args:
        cfg: the composed configuration.
        choices: Hydra's runtime choices (`{"net": "enet", "conv": "standard", ...}`).
    """
    for key, rule in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        problem = rule(value)
        if problem:
            raise ConfigError(f"{key}={value} is out of range: {problem}")
    conv_choice = choices.get("conv")
    if conv_choice != "standard" and "conv" not in cfg.net:
        raise ConfigError(
            f"conv={conv_choice} has no effect on net={choices.get('net')}: its layers are fixed by its paper; "
            "use conv=standard or a net that takes a conv family"
        )
    if cfg.resume is not None and cfg.pretrained is not None:
        raise ConfigError("resume and pretrained are exclusive: resume continues a run, pretrained starts a new one")
