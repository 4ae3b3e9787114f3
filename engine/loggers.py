"""Logger factories for the `logger/` config group.

Each factory takes the `RunContext` (filled by the experiment runner) plus its own config
keys. The W&B logger goes offline by itself when there is no API key or the W&B host
cannot be reached within a few seconds, so a run never hangs on the network.
"""

from __future__ import annotations

import csv
import netrc
import os
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from datasets.caching import atomic_file
from engine.config import ConfigError

WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class RunContext:
    """What the loggers need to know about the run being set up."""

    run_dir: Path
    name: str
    config: dict[str, Any]  # the flattened, resolved configuration
    debug: bool = False
    wandb_run_id: str | None = None  # set when resuming a run
    resume_step: int | None = None  # global step of the checkpoint a resumed run starts from
    tags: list[str] = field(default_factory=list)


def csv_logger(context: RunContext) -> CSVLogger:
    """Metrics as CSV under `<run_dir>/csv/version_<n>/metrics.csv` (no account needed).

    A resumed run continues the newest `metrics.csv` of its folder, without the rows
    logged after its checkpoint, so the file reads as if the run had never stopped.
    """
    earlier = sorted((context.run_dir / "csv").glob("version_*/metrics.csv"), key=lambda path: int(path.parent.name.split("_")[-1]))
    if context.resume_step is None or not earlier:
        logger = CSVLogger(save_dir=str(context.run_dir), name="csv")
    else:
        metrics_file = earlier[-1]
        with open(metrics_file, newline="") as file:
            reader = csv.DictReader(file)
            header, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < context.resume_step]
        logger = CSVLogger(save_dir=str(context.run_dir), name="csv", version=int(metrics_file.parent.name.split("_")[-1]))
        held = metrics_file.with_name("metrics.before-resume.csv")  # the whole history until the rewrite is done
        os.replace(metrics_file, held)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = logger.experiment  # creating the writer would delete a metrics.csv
        writer.metrics_keys = sorted(header)
        with atomic_file(metrics_file, "w", newline="") as file:
            table = csv.DictWriter(file, fieldnames=writer.metrics_keys)
            table.writeheader()
            table.writerows(kept)
        held.unlink()
    logger.log_hyperparams(context.config)
    return logger


class FlushLoggers(pl.Callback):
    """Writes buffered metrics (CSV) to disk with every checkpoint and at each epoch start,
    so that a run killed after a checkpoint has on disk every row logged before it."""

    def _flush(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def _has_api_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:  # W&B keeps its key in ~/.netrc, or in the file $NETRC names
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to `host:port` opens within `timeout` seconds (name lookup included)."""
    reachable: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)


def resolve_wandb_mode(mode: str, debug: bool) -> str:
    """`WANDB_MODE` wins; `auto` means online only with an API key and a reachable host."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode={mode!r} is not one of {', '.join(WANDB_MODES)}")
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if mode != "auto":
        return mode
    if debug:
        return "offline"
    host = _wandb_host()
    return "online" if _has_api_key(host) and host_reachable(host) else "offline"


# Overrides that do not make a run a different setting: a seed sweep's jobs share a W&B group.
_NOT_A_SETTING = ("seed", "paths.", "resume", "hydra/", "hydra.")


def sweep_group(name: str) -> str | None:
    """The W&B group of a Hydra multirun job: the run name and the job's overrides without
    the seed (and paths), e.g. `flexnet3-flex-mnist:kernel.regularize.target=gabor` for every
    job of `-m seed=0,1,2 kernel.regularize.target=gabor`, so that W&B's grouped view shows
    the mean and spread over seeds. None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    overrides = [override.lstrip("+~") for override in HydraConfig.get().overrides.task]
    setting = sorted(override for override in overrides if not override.startswith(_NOT_A_SETTING))
    return ":".join([name, ",".join(setting)] if setting else [name])[:128]  # W&B's limit on group names


def wandb_logger(
    context: RunContext,
    project: str,
    entity: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    log_model: bool | str = False,
    mode: str = "auto",
) -> WandbLogger:
    """A W&B run named after the experiment, with the flattened config and the given tags.

    Resuming a run (`context.wandb_run_id`) continues the same W&B run. Without a `group`, the
    jobs of a Hydra multirun are grouped by setting (`sweep_group`: seeds together).
    """
    resolved = resolve_wandb_mode(mode, context.debug)
    if resolved == "online" and not _has_api_key(_wandb_host()):
        raise ConfigError(
            f"logger.wandb.mode=online needs a W&B API key: run `wandb login` (or set WANDB_API_KEY), "
            "or use logger.wandb.mode=auto (online only when a key is configured) or offline"
        )
    # `mode` goes straight to wandb.init; Lightning's own `offline` flag would set
    # WANDB_MODE for the whole process, leaking into later runs.
    logger = WandbLogger(
        name=context.name,
        save_dir=str(context.run_dir),
        project=project,
        entity=entity,
        group=group if group is not None else sweep_group(context.name),
        tags=list(tags) + context.tags,
        log_model=log_model if resolved == "online" else False,
        mode=resolved,
        id=context.wandb_run_id,
        config=context.config,
    )
    # Lightning always passes `anonymous` to wandb.init, which then warns on every run
    # that the setting has no effect.
    logger._wandb_init.pop("anonymous", None)
    return logger


def finish_runs(loggers: Sequence[Any]) -> None:
    """Close the W&B runs of `loggers` and wait until their files are complete on disk.

    `run.finish()` only tells W&B's service process that the run is over; the service
    writes the rest of the run's log (`run-<id>.wandb`, which `wandb sync` uploads) when it
    closes the stream, some time later. Shutting the service down waits for that, so an
    offline run is whole when the experiment returns, and the next experiment in this
    process (a Hydra multirun, a test) starts its own run and service."""
    finished = False
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
            finished = True
    if finished:
        import wandb

        wandb.teardown()
