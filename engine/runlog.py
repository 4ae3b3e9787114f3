"""The run's own log: `<run folder>/farconv.log` receives what the run prints, and more.

Lightning logs to its own non-propagating loggers, which Hydra's job log never saw (so
its file stayed empty); Hydra's job log is switched off (`cfg/config.yaml`) and this file
handler is attached to the root logger and to Lightning's for the duration of a run,
in the folder the run really writes to (a resumed run's original folder).

Under `console_for_users()` (the entry scripts), warnings become log records too, and the
console leaves out the lines a user has no use for (`CONSOLE_NOISE`: Lightning's hardware
summary and logger tip, a deprecation inside Lightning, the checkpoint-folder warning a
resumed run always gets); the run's log file keeps every line, those logged before the
run folder was known (while the trainer was built) included.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections import deque
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

_WARNINGS = "py.warnings"  # where `logging.captureWarnings` sends warnings
_TARGETS = ("", "farconv", "pytorch_lightning", "lightning_fabric", _WARNINGS)

# Lines the console leaves out (the run's log file keeps them).
CONSOLE_NOISE = tuple(
    re.compile(pattern)
    for pattern in (
        r"^(GPU|TPU) available: ",  # Lightning's hardware summary; "GPU available but not used" stays
        r"^💡 Tip: .*litlogger",  # Lightning's advertisement for its cloud logger
        r"^Loading `train_dataloader` to estimate number of stepping batches",
        r"isinstance\(treespec, LeafSpec\)` is deprecated",  # inside Lightning, not the user's to fix
        r"Checkpoint directory .* exists and is not empty",  # expected when a run is resumed
    )
)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in CONSOLE_NOISE)


def _without_trailing_newline(record: logging.LogRecord) -> bool:
    """Drop the newline a formatted warning ends with (the handler adds its own)."""
    record.msg, record.args = record.getMessage().rstrip(), ()
    return True


class _HeldRecords(logging.Handler):
    """Keeps what is logged while no run log is open, for the next run log to write first."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: deque[logging.LogRecord] = deque(maxlen=1000)  # bounded: a command may never open one
        self.open_run_logs = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not self.open_run_logs:
            self.records.append(record)


_HELD = _HeldRecords()


@contextlib.contextmanager
def console_for_users() -> Iterator[None]:
    """While inside: warnings are logged (console and run log), the console drops
    `CONSOLE_NOISE`, and records logged outside a run log wait for the next one."""
    console_filter = _ConsoleFilter()
    loggers = [logging.getLogger(name) for name in _TARGETS[1:]]
    consoles = [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    warnings_logger, warnings_console = logging.getLogger(_WARNINGS), logging.StreamHandler(sys.stderr)
    consoles.append(warnings_console)
    for handler in consoles:
        handler.addFilter(console_filter)
    for logger in loggers:
        logger.addHandler(_HELD)
    warnings_logger.addHandler(warnings_console)
    warnings_logger.addFilter(_without_trailing_newline)
    warnings_logger.propagate = False  # the root logger may have a console handler of Hydra's
    # its own level: inherited from the root logger, which a library may have raised
    # above WARNING, warnings would vanish
    warnings_level, warnings_logger.level = warnings_logger.level, logging.WARNING
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        warnings_logger.level = warnings_level
        warnings_logger.propagate = True
        warnings_logger.removeFilter(_without_trailing_newline)
        warnings_logger.removeHandler(warnings_console)
        for logger in loggers:
            logger.removeHandler(_HELD)
        for handler in consoles:
            handler.removeFilter(console_filter)
        _HELD.records.clear()


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Append the log lines of this process (rank 0) to `run_dir/farconv.log` while inside,
    after those held since the last run log closed (see `console_for_users`)."""
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    while _HELD.records:
        handler.handle(_HELD.records.popleft())
    loggers = [logging.getLogger(name) for name in _TARGETS]
    for logger in loggers:
        logger.addHandler(handler)
    _HELD.open_run_logs += 1
    try:
        yield
    finally:
        _HELD.open_run_logs -= 1
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
