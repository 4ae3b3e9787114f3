"""Cross-resolution experiments (FlexConv, Romero et al., arXiv 2110.08059, Sec. 5.3).

`run_crossres.py` trains a net on inputs resized to `cross_res.source_res`, evaluates it
out of the box on inputs resized to `cross_res.target_res`, fine-tunes it there for
`cross_res.finetune_epochs` and tests again. The phases log to one run (the same CSV file and
W&B run) under `source/…`, `ootb/…` and `target/…`, with steps continuing.
With `cross_res.bn_recalibration_batches > 0` a fourth test, `ootb_bn/…`, runs the
out-of-the-box weights with BatchNorm statistics re-estimated at the target resolution
(no gradient step; the fine-tuning phase starts from the trained statistics).

- Continuous-kernel layers (CKConv/FlexConv) are re-sampled for the target grid by
  `layers.flexconv.resample_kernels` before the target phases.
- A net that cannot take inputs of a resolution (a flattening head, say) gets them resized
  once more, to the dataset's native size, and the run says so.

The phases are built with `engine.experiment.build_experiment`, so checks, callbacks,
checkpoints and loggers are those of `run_experiment.py`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from datasets.base import DataModule
from datasets.transforms import ThenOnInput
from engine.config import ConfigError
from engine.experiment import Experiment, build_experiment, remove_if_empty, write_run_config
from engine.loggers import finish_runs
from engine.runlog import log, run_log
from engine.tasks import TaskModule
from layers.flexconv import resample_kernels

PHASES = ("source", "ootb", "ootb_bn", "target")


class PhaseLogger(Logger):
    """Forwards to `inner`, naming every metric `<phase>/<name>` and shifting its step by
    `step_offset`, so that phases trained by separate trainers share one run."""

    def __init__(self, inner: Logger) -> None:
        super().__init__()
        self.inner = inner
        self.phase = PHASES[0]
        self.step_offset = 0

    @property
    def name(self) -> str | None:
        return self.inner.name

    @property
    def version(self) -> int | str | None:
        return self.inner.version

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    @property
    def experiment(self) -> Any:
        return self.inner.experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        renamed = {f"{self.phase}/{key}": value for key, value in metrics.items() if key != "epoch"}
        self.inner.log_metrics(renamed, None if step is None else step + self.step_offset)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.finalize(status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.inner.after_save_checkpoint(checkpoint_callback)


def resize(inputs: torch.Tensor, size: tuple[int, ...], interpolation: str) -> torch.Tensor:
    """`(C, *S) -> (C, *size)`; antialiased when shrinking an image."""
    if tuple(inputs.shape[1:]) == size:
        return inputs
    mode = "nearest" if interpolation == "nearest" else ("linear", "bilinear", "trilinear")[len(size) - 1]
    antialias = mode == "bilinear" and any(new < old for new, old in zip(size, inputs.shape[1:]))
    return F.interpolate(inputs[None].float(), size=size, mode=mode, antialias=antialias)[0]


def fits_input_size(task: TaskModule, in_channels: int, size: tuple[int, ...]) -> bool:
    """Whether the net maps a batch of `(in_channels, *size)` inputs to the task's output shape."""
    was_training = task.net.training
    task.net.eval()
    try:
        with torch.no_grad():
            output = task.net(torch.zeros(2, in_channels, *size))
        return tuple(output.shape) == task.expected_output_shape(2, size)
    except RuntimeError:
        return False
    finally:
        task.net.train(was_training)


def set_resolution(experiment: Experiment, res: int, interpolation: str) -> str:
    """Make every split of the experiment's datamodule deliver inputs of side `res`; returns how.

    A net that cannot take that size gets the inputs resized on to the dataset's native size.
    """
    datamodule: DataModule = experiment.datamodule
    native = tuple(datamodule.input_size)
    size = (res,) * len(native)
    bound = not fits_input_size(experiment.task, datamodule.in_channels, size)

    def to_resolution(inputs: torch.Tensor) -> torch.Tensor:
        inputs = resize(inputs, size, interpolation)
        return resize(inputs, native, interpolation) if bound else inputs

    for split in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        split.transform = ThenOnInput(split.transform, to_resolution)
    shape = "x".join(map(str, size))
    if bound:
        return f"inputs resized to {shape}, then to {'x'.join(map(str, native))}: the net cannot take {shape} inputs"
    return f"inputs resized to {shape}"


def check_cross_res(cfg: DictConfig) -> tuple[int, int]:
    settings = cfg.cross_res
    for key in ("source_res", "target_res"):
        if settings[key] is None:
            raise ConfigError(f"cross_res.{key} is required, e.g. cross_res.source_res=16 cross_res.target_res=32")
    return int(settings.source_res), int(settings.target_res)


def phase_config(cfg: DictConfig, epochs: int, pretrained: str | None) -> DictConfig:
    """The fine-tuning phase's configuration: `epochs` at the target resolution from `pretrained`."""
    phase = copy.deepcopy(cfg)
    OmegaConf.update(phase, "train.epochs", epochs)
    if cfg.cross_res.finetune_limit_train_batches is not None:
        OmegaConf.update(phase, "trainer.limit_train_batches", cfg.cross_res.finetune_limit_train_batches)
    OmegaConf.update(phase, "pretrained", pretrained)
    OmegaConf.update(phase, "pretrained_wandb", None)
    OmegaConf.update(phase, "resume", None)
    return phase


def cross_resolution(cfg: DictConfig, run_dir: Path, choices: dict[str, Any]) -> dict[str, float]:
    """Run the phases; returns `{"source/test/acc": …, "ootb/test/acc": …, "target/test/acc": …}`
    (and `ootb_bn/test/…` with `cross_res.bn_recalibration_batches > 0`)."""
    source_res, target_res = check_cross_res(cfg)
    if cfg.resume is not None:
        raise ConfigError("resume is not supported by run_crossres.py: pass the source checkpoint as pretrained=… with train.epochs=0")
    interpolation = cfg.cross_res.interpolation
    source = build_experiment(cfg, run_dir, choices)
    write_run_config(cfg, run_dir)
    loggers = [PhaseLogger(logger) for logger in source.trainer.loggers]
    source.trainer.loggers = loggers
    metrics: dict[str, float] = {}
    with run_log(run_dir):
        log.info(f"Run folder {run_dir}; cross-resolution {source_res} -> {target_res}")
        log.info(f"source phase: {set_resolution(source, source_res, interpolation)}")
        checkpoint = cfg.pretrained
        if cfg.train.epochs > 0:
            source.trainer.fit(source.task, datamodule=source.datamodule)
            checkpoint = source.best_checkpoint.best_model_path if source.best_checkpoint is not None else None
            if not checkpoint:
                checkpoint = str(run_dir / "checkpoints" / "source-final.ckpt")
                source.trainer.save_checkpoint(checkpoint)
        elif checkpoint is None:  # pretrained_wandb: build_experiment downloaded it into the run folder
            checkpoint = str(next((run_dir / "pretrained").glob("*.ckpt")))
        metrics.update(_test("source", source_res, source, checkpoint if cfg.train.epochs > 0 else None))
        offset = source.trainer.global_step

        target = build_experiment(phase_config(cfg, cfg.cross_res.finetune_epochs, str(checkpoint)), run_dir / "target", choices, loggers=loggers)
        resampled = resample_kernels(target.task.net, source_res, target_res)
        if resampled:
            log.info(f"out-of-the-box and fine-tuning phases: re-sampled the continuous kernels of {resampled} layers for the {target_res / source_res:g}x finer grid")
        log.info(f"out-of-the-box and fine-tuning phases: {set_resolution(target, target_res, interpolation)}")
        for logger in loggers:
            logger.phase, logger.step_offset = "ootb", offset
        metrics.update(_test("ootb", target_res, target))
        batches = cfg.cross_res.bn_recalibration_batches
        if batches > 0:
            for logger in loggers:
                logger.phase = "ootb_bn"
            device = target.trainer.strategy.root_device
            with batch_norm_statistics_from(target.task.net, target.datamodule.train_dataloader(), batches, device) as (norms, used):
                if norms == 0:
                    log.warning("ootb_bn phase skipped: the net has no BatchNorm layer with running statistics")
                else:
                    log.info(f"ootb_bn phase: the statistics of {norms} BatchNorm layers re-estimated on {used} training batches "
                             f"(training transforms) at {target_res}, no gradient step")
                    metrics.update(_test("ootb_bn", target_res, target))
        if cfg.cross_res.finetune_epochs > 0:
            for logger in loggers:
                logger.phase = "target"
            target.trainer.fit(target.task, datamodule=target.datamodule)
            best = target.best_checkpoint.best_model_path if target.best_checkpoint is not None else None
            metrics.update(_test("target", target_res, target, best or None))
        _report(metrics, {"source": source_res, "ootb": target_res, "ootb_bn": target_res, "target": target_res})
        for logger in loggers:
            logger.save()
        finish_runs([logger.inner for logger in loggers])
    return metrics


PHASE_TITLES = {"source": "source (trained)", "ootb": "out of the box", "ootb_bn": "ootb, BN re-est.", "target": "fine-tuned (target)"}


@contextlib.contextmanager
def batch_norm_statistics_from(net: torch.nn.Module, loader: Iterable[Any], max_batches: int,
                               device: torch.device | None = None) -> Iterator[tuple[int, int]]:  # fmt: skip
    """Within the block, every BatchNorm of `net` that tracks running statistics uses statistics
    re-estimated from the first `max_batches` batches `(inputs, ...)` of `loader`: an
    equal-weight average over them, computed with the rest of the net in eval mode (no dropout,
    no gradient) on `device` (default: the net's; the net is moved there). On exit the trained
    statistics and every module's train/eval mode come back; the global random number
    generator is left as it was (a shuffling loader draws from it). Yields `(number of
    BatchNorm layers, batches used)`.

    A net trained at one resolution meets differently distributed activations at another,
    even with kernels that do not alias; re-estimating the statistics separates that shift
    from what the weights lose (as FixRes, Touvron et al. 2019, does for train/test resolution).
    """
    norms = [module for module in net.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats]
    saved = [(norm.momentum, {name: buffer.clone() for name, buffer in norm.named_buffers(recurse=False)}) for norm in norms]
    modes = [(module, module.training) for module in net.modules()]
    device = device if device is not None else next(net.parameters()).device
    used = 0
    try:
        if norms:
            net.to(device).eval()
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None  # cumulative average
                norm.train()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                for batch in itertools.islice(loader, max_batches):
                    net(batch[0].to(device))
                    used += 1
            net.eval()
        yield len(norms), used
    finally:
        for norm, (momentum, buffers) in zip(norms, saved):
            norm.momentum = momentum
            for name, value in buffers.items():
                getattr(norm, name).copy_(value)
        for module, training in modes:
            module.training = training


def _test(phase: str, res: int, experiment: Experiment, checkpoint: str | Path | None = None) -> dict[str, float]:
    """Test `checkpoint` (None: the current weights) in `phase`, print its metrics under a title
    naming the phase and resolution, and return them as `{"<phase>/test/acc": ...}`."""
    results = experiment.trainer.test(experiment.task, datamodule=experiment.datamodule, ckpt_path=checkpoint, verbose=False)
    metrics = {f"{phase}/{key}": float(value) for key, value in (results[0] if results else {}).items()}
    _print_phase(phase, res, metrics)
    return metrics


@rank_zero_only
def _print_phase(phase: str, res: int, metrics: Mapping[str, float]) -> None:
    log.info(f"{PHASE_TITLES[phase]}, test at {res}:")
    for key, value in sorted(metrics.items()):
        log.info(f"  {key.split('/', 1)[1]:<16} {value:.4f}")


@rank_zero_only
def _report(metrics: Mapping[str, float], resolutions: Mapping[str, int]) -> None:
    """One table of the phases that ran: resolution, test accuracy and loss."""
    rows = [phase for phase in PHASES if f"{phase}/test/loss" in metrics or f"{phase}/test/acc" in metrics]
    log.info(f"{'phase':<20} {'resolution':>10} {'test acc':>9} {'test loss':>10}")
    for phase in rows:
        accuracy = metrics.get(f"{phase}/test/acc")
        loss = metrics.get(f"{phase}/test/loss")
        shown_accuracy = f"{100 * accuracy:8.2f}%" if accuracy is not None else f"{'-':>9}"
        shown_loss = f"{loss:10.4f}" if loss is not None else f"{'-':>10}"
        log.info(f"{PHASE_TITLES[phase]:<20} {resolutions[phase]:>10} {shown_accuracy} {shown_loss}")


def run_crossres(cfg: DictConfig) -> dict[str, float]:
    """The `@hydra.main` task of `run_crossres.py`."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    try:
        return cross_resolution(cfg, run_dir, choices)
    except BaseException:
        remove_if_empty(run_dir)  # a run that stops before its first phase leaves no folder
        raise
