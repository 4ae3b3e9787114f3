"""The run's own log: `<run folder>/farconv.log` receives what the run prints.

Lightning logs to its own non-propagating loggers, which Hydra's job log never saw (so
its file stayed empty); Hydra's job log is switched off (`cfg/config.yaml`) and this file
handler is attached to the root logger and to Lightning's for the duration of a run,
in the folder the run really writes to (a resumed run's original folder).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from pytorch_lightning.utilities import rank_zero_only

LOG_NAME = "farconv.log"
log = logging.getLogger("farconv")  # the run's own messages: stdout and farconv.log
if not log.handlers:
    _console = logging.StreamHandler(sys.stdout)
    _console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(_console)
    log.setLevel(logging.INFO)
    log.propagate = False

_TARGETS = ("", "farconv", "pytorch_lightning", "lightning_fabric")


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Append the log lines of this process (rank 0) to `run_dir/farconv.log` while inside."""
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in _TARGETS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
