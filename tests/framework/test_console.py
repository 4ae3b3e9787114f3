"""The console shows what a user needs; the run's log file keeps every line (`engine.runlog`)."""

from __future__ import annotations

import logging
import warnings

from engine.runlog import LOG_NAME, console_for_users, run_log


def _warning_state() -> str:
    """What decides whether a warning reaches the console, for a failure message."""
    warnings_logger = logging.getLogger("py.warnings")
    return (
        f"py.warnings disabled={warnings_logger.disabled} level={warnings_logger.level} "
        f"effective level={warnings_logger.getEffectiveLevel()} root level={logging.getLogger().level} "
        f"handlers={warnings_logger.handlers} captured={logging._warnings_showwarning is not None} "
        f"filters={warnings.filters[:4]}"
    )


def test_warnings_reach_console_whatever_the_root_loggers_level(tmp_path, capsys):
    """In the full suite an earlier test left the root logger above WARNING; the warnings
    logger inherited it and dropped every warning."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), console_for_users():
            warnings.simplefilter("always")
            warnings.warn("a warning under a quiet root logger")
    finally:
        root.setLevel(level)
    assert "a warning under a quiet root logger" in capsys.readouterr().err


def test_warnings_reach_console_and_run_log_noise_only_the_run_log(tmp_path, capsys):
    state = _warning_state()
    # "always": whatever filters earlier tests or imported libraries left, each warning is shown
    with warnings.catch_warnings(), console_for_users():
        warnings.simplefilter("always")
        logging.getLogger("farconv.test").warning("logged before the run folder is known")
        with run_log(tmp_path):
            warnings.warn("Checkpoint directory /somewhere exists and is not empty.")
            warnings.warn("a warning the user needs")
    console = capsys.readouterr().err
    assert "a warning the user needs" in console and "exists and is not empty" not in console, state
    written = (tmp_path / LOG_NAME).read_text()
    assert written.index("logged before the run folder is known") < written.index("exists and is not empty")
    assert "a warning the user needs" in written and "\n\n" not in written
