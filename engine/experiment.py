"""One experiment: build the datamodule, net, task and trainer from the config, then fit and test.

Everything is built (and the data read and checked) before training starts, inside
`reporting_user_errors`, so a bad dataset folder, a corrupt file or an impossible net ×
dataset pairing stops the run with one clear line before any work.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from engine.checkpointing import RUN_KEY, AtomicCheckpointIO, ResumeStateCheckpoint, RunIdentity
from engine.cli import reporting_user_errors
from engine.config import ConfigError
from engine.loggers import FlushLoggers, RunContext, finish_runs
from engine.nets import build_net
from engine.resume import (
    build_identity,
    check_fits,
    check_same_build,
    find_resume_checkpoint,
    read_checkpoint,
    run_folder_of,
    single_run_folders,
    sweep_job_folders,
)
from engine.runlog import log, run_log
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
        """Fit (unless `train.do=false`), then test the best checkpoint; returns the test metrics.
        Log lines go to `<run folder>/farconv.log` too, and a new run folder gets the resolved
        configuration as `config.yaml`."""
        write_run_config(self.cfg, self.run_dir)
        with run_log(self.run_dir):
            return self._run()

    def _run(self) -> dict[str, float]:
        command = shlex.join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith(".py") else None
        resumed = f", resuming {self.resume_from}" if self.resume_from is not None else ""
        rank_zero_info(f"Run folder {self.run_dir}{resumed}" + (f"; command: {command}" if command else ""))
        if self.cfg.test.before_train:
            self.trainer.test(self.task, datamodule=self.datamodule)
        test_checkpoint = self.resume_from
        if self.cfg.train.do:
            self.trainer.fit(self.task, datamodule=self.datamodule, ckpt_path=self.resume_from)
            test_checkpoint = None  # the weights training ended with, unless validation picked a checkpoint
            if self.best_checkpoint is not None and self.best_checkpoint.best_model_path:
                test_checkpoint = Path(self.best_checkpoint.best_model_path)
            else:
                rank_zero_info("No best checkpoint was selected (no validation, or no best_checkpoint callback): testing the final weights")
        metrics = self.test(test_checkpoint)
        _report(metrics)
        finish_runs(self.trainer.loggers)
        return metrics

    def test(self, checkpoint: str | Path | None = None) -> dict[str, float]:
        """Test the weights of `checkpoint` (None: the task's current weights); returns the metrics."""
        results = self.trainer.test(self.task, datamodule=self.datamodule, ckpt_path=checkpoint)
        return {key: float(value) for key, value in (results[0] if results else {}).items()}


def write_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the resolved configuration (without Hydra's node) to `<run_dir>/config.yaml`,
    unless the folder has one: a resumed run keeps the configuration it started with."""
    path = run_dir / "config.yaml"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True))


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
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, Any],
    extra_callbacks: Iterable[pl.Callback] = (),
    previous_runs: Sequence[Path] | None = None,
    runs_described_as: str | None = None,
    loggers: list[Any] | None = None,
) -> Experiment:
    """Build (and check) everything from `cfg`.

    Args:
        cfg: the composed configuration.
        run_dir: receives logs and checkpoints (a resumed run keeps its original folder).
        choices: Hydra's chosen option per config group, for messages.
        extra_callbacks: added to the configured callbacks.
        previous_runs: earlier run folders of this experiment, oldest first, where
            `resume=last` looks (default: the folders under `<paths.runs>/<name>/`).
        runs_described_as: where those folders are, for messages.
        loggers: loggers to use instead of those `cfg.logger` builds (a later phase of
            `run_crossres.py` logs to the run its first phase opened).
    """
    with reporting_user_errors():
        identity = build_identity(cfg, choices)
        resume_from, resume_checkpoint, wandb_run_id, resume_step = None, None, None, None
        if cfg.resume:
            if previous_runs is None:
                previous_runs = single_run_folders(Path(cfg.paths.runs), cfg.name, exclude=run_dir)
            resume_from = find_resume_checkpoint(cfg.resume, previous_runs, runs_described_as or f"{Path(cfg.paths.runs) / cfg.name}/")
            option = f"resume={cfg.resume}" if cfg.resume != "last" else f"resume=last ({resume_from})"
            resume_checkpoint = read_checkpoint(resume_from, option)
            check_same_build(resume_checkpoint, identity, option)
            run_dir = run_folder_of(resume_from) or run_dir
            wandb_run_id = (resume_checkpoint.get(RUN_KEY) or {}).get("wandb_run_id")
            resume_step = int(resume_checkpoint.get("global_step", 0))
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.dataset)
        datamodule.prepare_data()
        datamodule.setup("fit")
        task = instantiate(
            cfg.task,
            net=build_net(cfg),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler),
        )
        check_net_fits_data(task, cfg, choices)
        # the model summary then counts FLOPs (per sample) instead of printing "Total FLOPs: 0"
        task.example_input_array = torch.zeros(1, cfg.dataset.in_channels, *cfg.dataset.input_size)
        if resume_checkpoint is not None:
            check_fits(resume_checkpoint, task, option)
            del resume_checkpoint
        pretrained = pretrained_checkpoint(cfg, run_dir)
        if pretrained is not None:
            load_net_weights(task, pretrained, strict=cfg.pretrained_strict)
        context = RunContext(run_dir=run_dir, name=cfg.name, config=flatten_config(cfg), debug=cfg.debug, wandb_run_id=wandb_run_id, resume_step=resume_step)
        # partials: a dataclass passed through instantiate() would become a DictConfig
        if loggers is None:
            loggers = [instantiate(node, _partial_=True)(context=context) for node in cfg.logger.values() if node is not None]
        callbacks = applicable_callbacks([instantiate(node) for node in cfg.callbacks.values() if node is not None], cfg, loggers)
        for callback in callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.dirpath = str(run_dir / "checkpoints")
        best = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
        callbacks += [ResumeStateCheckpoint(), RunIdentity(identity), FlushLoggers(), *extra_callbacks]
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
    """The checkpoint named by `pretrained` or downloaded from `pretrained_wandb` (exclusive,
    see `engine.config.validate`)."""
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
    checkpoint = read_checkpoint(path, f"pretrained={path}")
    state = checkpoint.get("state_dict", checkpoint)
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
        log.info(f"{key}: {value:.4f}")
    if "test/acc" in metrics:
        log.info(f"Test accuracy: {100 * metrics['test/acc']:.2f}%")


def remove_if_empty(folder: Path) -> None:
    """Remove the folder Hydra made for this run, and its parent (`runs/<name>/`, or a
    sweep folder holding only Hydra's `multirun.yaml`), when nothing else is in them."""
    try:
        folder.rmdir()
        if [path.name for path in folder.parent.iterdir()] == ["multirun.yaml"]:
            (folder.parent / "multirun.yaml").unlink()
        folder.parent.rmdir()
    except OSError:  # not empty (or already gone): it holds a run
        return


def run_experiment(cfg: DictConfig) -> dict[str, float]:
    """The `@hydra.main` task of `run_experiment.py`.

    Hydra has made a fresh, empty folder for the run; it is removed again when the run
    stops before training (a configuration error) or continues an earlier run's folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    previous_runs, where = None, None
    if cfg.resume == "last" and hydra_cfg.mode == RunMode.MULTIRUN:
        sweeps = Path(hydra_cfg.sweep.dir).parent
        overrides = output_dir.name.partition("_")[2]  # this job's folder: <job number>_<overrides>
        previous_runs = sweep_job_folders(sweeps, overrides, exclude=output_dir)
        where = f"{sweeps}/*/<job number>_{overrides}/"
    elif cfg.resume == "last":
        previous_runs = single_run_folders(Path(cfg.paths.runs), cfg.name, exclude=output_dir)
    try:
        experiment = build_experiment(cfg, output_dir, choices, previous_runs=previous_runs, runs_described_as=where)
    except BaseException:
        remove_if_empty(output_dir)
        raise
    if experiment.run_dir.resolve() != output_dir.resolve():
        remove_if_empty(output_dir)
    return experiment.run()
