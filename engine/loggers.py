"""Logger factories for the `logger/` config group.

Each factory takes the `RunContext` (filled by the experiment runner) plus its own config
keys. The W&B logger goes offline by itself when there is no API key or the W&B host
cannot be reached within a few seconds, so a run never hangs on the network.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from pytorch_lightning.loggers import CSVLogger, WandbLogger

WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class RunContext:
    """What the loggers need to know about the run being set up."""

    run_dir: Path
    name: str
    config: dict[str, Any]  # the flattened, resolved configuration
    debug: bool = False
    wandb_run_id: str | None = None  # set when resuming a run
    tags: list[str] = field(default_factory=list)


def csv_logger(context: RunContext) -> CSVLogger:
    """Metrics as CSV under `<run_dir>/csv/version_<n>/metrics.csv` (no account needed)."""
    logger = CSVLogger(save_dir=str(context.run_dir), name="csv")
    logger.log_hyperparams(context.config)
    return logger


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

    Resuming a run (`context.wandb_run_id`) continues the same W&B run.
    """
    resolved = resolve_wandb_mode(mode, context.debug)
    # `mode` goes straight to wandb.init; Lightning's own `offline` flag would set
    # WANDB_MODE for the whole process, leaking into later runs.
    return WandbLogger(
        name=context.name,
        save_dir=str(context.run_dir),
        project=project,
        entity=entity,
        group=group,
        tags=list(tags) + context.tags,
        log_model=log_model if resolved == "online" else False,
        mode=resolved,
        id=context.wandb_run_id,
        config=context.config,
    )


def finish_runs(loggers: Sequence[Any]) -> None:
    """Close the W&B runs of `loggers`, so that the next experiment in this process
    (a Hydra multirun, a test) starts its own run instead of reusing this one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
