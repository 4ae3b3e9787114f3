"""One experiment: build the datamodule, net, task and trainer from the config, then fit and test.

Everything is built (and the data read and checked) before training starts, inside
`reporting_user_errors`, so a bad dataset folder, a corrupt file or an impossible net ×
dataset pairing stops the run with one clear line before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from engine.checkpointing import AtomicCheckpointIO, ResumeStateCheckpoint, RunIdentity, find_resume_checkpoint, run_identity
from engine.cli import reporting_user_errors
from engine.config import ConfigError
from engine.loggers import RunContext, finish_runs
from engine.tasks import TaskModule

DEBUG_LIMITS = {
    "max_epochs": 1,
    "limit_train_batches": 4,
    "limit_val_batches": 2,
    "limit_test_batches": 2,
    "log_every_n_steps": 1,
}


@dataclass
class Experiment:
    """Everything `fit`/`test` need, built from one configuration."""

    cfg: DictConfig
    run_dir: Path
    datamodule: pl.LightningDataModule
    task: TaskModule
    trainer: pl.Trainer
    best_checkpoint: ModelCheckpoint | None
    resume_from: Path | None

    def run(self) -> dict[str, float]:
        """Fit (unless `train.do=false`), then test the best checkpoint; returns the test metrics."""
        if self.cfg.test.before_train:
            self.trainer.test(self.task, datamodule=self.datamodule)
        test_checkpoint = self.resume_from
        if not self.cfg.train.do and self.resume_from is None and self.cfg.pretrained is None and self.cfg.pretrained_wandb is None:
            rank_zero_warn("train.do=false without resume, pretrained or pretrained_wandb: testing an untrained net")
        if self.cfg.train.do:
            self.trainer.fit(self.task, datamodule=self.datamodule, ckpt_path=self.resume_from)
            if self.best_checkpoint is not None and self.best_checkpoint.best_model_path:
                test_checkpoint = Path(self.best_checkpoint.best_model_path)
        results = self.trainer.test(self.task, datamodule=self.datamodule, ckpt_path=test_checkpoint)
        metrics = {key: float(value) for key, value in (results[0] if results else {}).items()}
        _report(metrics)
        finish_runs(self.trainer.loggers)
        return metrics


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved configuration (without Hydra's own node) as `{"train.lr": 0.001, ...}`."""
    container = {
        key: OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
        for key, node in cfg.items()
        if key != "hydra"  # Hydra's node holds sweep-only keys that a single run leaves unset
    }
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(container, "")
    return flat


def build_experiment(
    cfg: DictConfig, run_dir: Path, choices: dict[str, Any], extra_callbacks: Iterable[pl.Callback] = ()
) -> Experiment:
    """Build (and check) everything from `cfg`.

    Args:
        cfg: the composed configuration.
        run_dir: receives logs and checkpoints (a resumed run keeps its original folder).
        choices: Hydra's chosen option per config group, for messages.
        extra_callbacks: added to the configured callbacks.
    """
    with reporting_user_errors():
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.dataset)
        datamodule.prepare_data()
        datamodule.setup("fit")
        task = instantiate(
            cfg.task,
            net=instantiate(cfg.net),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler),
        )
        check_net_fits_data(task, cfg, choices)
        resume_from = find_resume_checkpoint(cfg.resume, Path(cfg.paths.runs), cfg.name) if cfg.resume else None
        wandb_run_id = None
        if resume_from is not None:
            run_dir = resume_from.parent.parent
            wandb_run_id = run_identity(resume_from).get("wandb_run_id")
        pretrained = pretrained_checkpoint(cfg, run_dir)
        if pretrained is not None:
            load_net_weights(task, pretrained, strict=cfg.pretrained_strict)
        context = RunContext(run_dir=run_dir, name=cfg.name, config=flatten_config(cfg), debug=cfg.debug, wandb_run_id=wandb_run_id)
        # partials: a dataclass passed through instantiate() would become a DictConfig
        loggers = [instantiate(node, _partial_=True)(context=context) for node in cfg.logger.values() if node is not None]
        callbacks = applicable_callbacks([instantiate(node) for node in cfg.callbacks.values() if node is not None], cfg, loggers)
        for callback in callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.dirpath = str(run_dir / "checkpoints")
        best = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
        callbacks += [ResumeStateCheckpoint(), RunIdentity(), *extra_callbacks]
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
            **(DEBUG_LIMITS if cfg.debug else {}),
        )
    return Experiment(cfg, run_dir, datamodule, task, trainer, best, resume_from)


def applicable_callbacks(callbacks: list[pl.Callback], cfg: DictConfig, loggers: list[Any]) -> list[pl.Callback]:
    """Drop the configured callbacks this run cannot use: the progress bar when
    `trainer.enable_progress_bar=false`, the learning-rate monitor without a logger."""
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    if not loggers:
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    return callbacks


def check_net_fits_data(task: TaskModule, cfg: DictConfig, choices: dict[str, Any]) -> None:
    """Run the net once on a dummy batch shaped like the data and check its output shape."""
    input_size = tuple(cfg.dataset.input_size)
    dummy = torch.zeros(2, cfg.dataset.in_channels, *input_size)
    expected = task.expected_output_shape(2, input_size)
    net_name, data_name = choices.get("net"), choices.get("dataset")
    was_training = task.net.training
    task.net.eval()
    try:
        with torch.no_grad():
            output = task.net(dummy)
    except RuntimeError as error:
        raise ConfigError(
            f"net={net_name} cannot process dataset={data_name} inputs of shape {tuple(dummy.shape)}: "
            f"{str(error).splitlines()[0]}"
        ) from error
    finally:
        task.net.train(was_training)
    if tuple(output.shape) != expected:
        raise ConfigError(
            f"net={net_name} maps dataset={data_name} inputs {tuple(dummy.shape)} to {tuple(output.shape)}, "
            f"but task={choices.get('task')} needs {expected}"
        )


def pretrained_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint named by `pretrained` or downloaded from `pretrained_wandb`."""
    if cfg.pretrained is not None and cfg.pretrained_wandb is not None:
        raise ConfigError("pretrained and pretrained_wandb are exclusive: give one checkpoint source")
    if cfg.pretrained is not None:
        path = Path(cfg.pretrained)
        if not path.is_file():
            raise ConfigError(f"pretrained={cfg.pretrained}: no such checkpoint file")
        return path
    if cfg.pretrained_wandb is not None:
        import wandb

        try:
            artifact_dir = Path(wandb.Api().artifact(cfg.pretrained_wandb, type="model").download(root=str(run_dir / "pretrained")))
        except Exception as error:  # wandb raises many types (network, auth, not found)
            raise ConfigError(f"pretrained_wandb={cfg.pretrained_wandb}: cannot download it ({error})") from error
        checkpoints = sorted(artifact_dir.glob("*.ckpt"))
        if not checkpoints:
            raise ConfigError(f"pretrained_wandb={cfg.pretrained_wandb}: the artifact holds no .ckpt file")
        return checkpoints[0]
    return None


def load_net_weights(task: TaskModule, path: Path, strict: bool) -> None:
    """Load the net's weights from a checkpoint of this framework or a plain state dict."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged file
        raise ConfigError(f"cannot read checkpoint {path}: {error}") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint {path} holds no state dict")
    net_state = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")} or state
    try:
        missing, unexpected = task.net.load_state_dict(net_state, strict=strict)
    except RuntimeError as error:
        raise ConfigError(f"checkpoint {path} does not fit the net: {str(error).splitlines()[0]}") from error
    rank_zero_info(f"Loaded weights from {path} (missing: {len(missing)}, unexpected: {len(unexpected)})")


@rank_zero_only
def _report(metrics: dict[str, float]) -> None:
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value:.4f}")
    if "test/acc" in metrics:
        print(f"Test accuracy: {100 * metrics['test/acc']:.2f}%")


def run_experiment(cfg: DictConfig) -> dict[str, float]:
    """The `@hydra.main` task of `run_experiment.py`."""
    from hydra.core.hydra_config import HydraConfig

    runtime = HydraConfig.get().runtime
    choices = OmegaConf.to_container(runtime.choices)
    return build_experiment(cfg, Path(runtime.output_dir), choices).run()
