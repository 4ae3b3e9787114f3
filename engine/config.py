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
from hydra.utils import get_method
from omegaconf import MISSING, DictConfig, OmegaConf

from engine.nets import is_model_conversion


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
    batch_size: int = 2
    warmup: int = 3
    repeats: int = 10
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class MaskConfig:
    init_value: float = 0.075  # FlexConv mask: initial sigma
    threshold: float = 0.1  # crop where the mask is below this
    dynamic_cropping: bool = True
    crop: str = "cover"  # which samples the crop keeps: cover | inside (layers.flexconv.mask.CROP_RULES)
    lr_factor: float = 0.1  # learning-rate factor of the mask parameters


@dataclass
class CrossResConfig:
    """`run_crossres.py`: train at `source_res`, evaluate and fine-tune at `target_res`."""

    source_res: Optional[int] = None  # side (or length) of the inputs the net is trained on
    target_res: Optional[int] = None  # side (or length) it is evaluated and fine-tuned at
    finetune_epochs: int = 0  # 0: evaluate out of the box only
    finetune_limit_train_batches: Optional[int] = None  # batches per fine-tuning epoch (None: trainer.limit_train_batches)
    interpolation: str = "bilinear"  # how inputs are resized: bilinear (linear in 1-D) | nearest
    bn_recalibration_batches: int = 0  # > 0: also test with BatchNorm statistics re-estimated at target_res (phase `ootb_bn`)


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
    kernel: Any = field(default_factory=dict)  # kernel network of conv=flex / conv=ckconv
    mask: MaskConfig = field(default_factory=MaskConfig)
    cross_res: CrossResConfig = field(default_factory=CrossResConfig)


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


def strictly_between(low: float, high: float) -> Rule:
    return lambda value: None if low < value < high else f"must be in ({low}, {high})"


def kernel_horizon(value: Any) -> Optional[str]:
    odd = isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value % 2 == 1
    return None if odd or value in ("same", "full") else "must be same, full or an odd kernel size"


RANGES: dict[str, Rule] = {
    "train.epochs": at_least(0),
    "train.batch_size": at_least(1),
    "train.lr": greater_than(0),
    "train.weight_decay": at_least(0),
    "train.grad_clip": at_least(0),
    "train.accumulate_grad_batches": at_least(1),
    "profile.batch_size": at_least(1),
    "profile.warmup": at_least(0),
    "profile.repeats": at_least(0),
    "profile.device": one_of("auto", "cpu", "cuda"),
    "dataset.num_workers": at_least(0),
    "mask.init_value": greater_than(0),
    "mask.threshold": strictly_between(0, 1),
    "mask.crop": one_of("cover", "inside"),
    "mask.lr_factor": greater_than(0),
    "conv.horizon": kernel_horizon,
    "kernel.net.hidden_channels": at_least(1),
    "kernel.net.num_layers": at_least(1),
    "kernel.net.omega_0": greater_than(0),
    "kernel.regularize.target": one_of("gabor", "gabor+mask"),
    "kernel.regularize.factor": at_least(0),
    "kernel.regularize.gauss_stddevs": at_least(0),
    "kernel.regularize.form": one_of("hinge", "max"),
    "kernel.regularize.init": one_of("nyquist", "paper"),
    "cross_res.source_res": at_least(1),
    "cross_res.target_res": at_least(1),
    "cross_res.finetune_epochs": at_least(0),
    "cross_res.finetune_limit_train_batches": at_least(1),
    "cross_res.interpolation": one_of("bilinear", "nearest"),
    "cross_res.bn_recalibration_batches": at_least(0),
}


# Family checks that relate several keys (e.g. a DCLS kernel count against its dilated size),
# as "module.function" names called with the composed config; each raises ValueError.
FAMILY_CHECKS = ("layers.dcls.factory.check_config",)


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
    for check in FAMILY_CHECKS:
        try:
            get_method(check)(cfg)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    conv_choice = choices.get("conv")
    takes_conv = "conv" in cfg.net and OmegaConf.is_interpolation(cfg.net, "conv")  # `conv: ${conv}`
    if conv_choice != "standard" and not takes_conv and not is_model_conversion(cfg.conv):
        raise ConfigError(
            f"conv={conv_choice} has no effect on net={choices.get('net')}: its layers are fixed by its paper; "
            "use conv=standard, a whole-model family (such as checkered or octave) or a net that takes a conv family"
        )
    if cfg.resume is not None and (cfg.pretrained is not None or cfg.pretrained_wandb is not None):
        raise ConfigError("resume and pretrained are exclusive: resume continues a run, pretrained starts a new one")
    if cfg.pretrained is not None and cfg.pretrained_wandb is not None:
        raise ConfigError("pretrained and pretrained_wandb are exclusive: give one checkpoint source")
    if all(cfg.get(key) is None for key in ("resume", "pretrained", "pretrained_wandb")):
        if OmegaConf.select(cfg, "train.do", default=True) is False:
            raise ConfigError("train.do=false tests without training, but nothing gives weights: pass pretrained, pretrained_wandb or resume")
        if OmegaConf.select(cfg, "train.epochs") == 0:
            raise ConfigError("train.epochs=0 trains nothing, and nothing gives weights: pass pretrained, pretrained_wandb or resume")
    milestones = OmegaConf.select(cfg, "scheduler.milestones", default=None)
    epochs = OmegaConf.select(cfg, "train.epochs", default=None)
    if milestones and epochs and max(milestones) >= epochs:
        raise ConfigError(
            f"scheduler.milestones={list(milestones)} must be epochs before train.epochs={epochs}: "
            "a milestone at or after the last epoch never changes the learning rate"
        )
