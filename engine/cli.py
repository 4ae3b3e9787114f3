"""Command-line entry shared by `run_experiment.py` and `run_profiler.py`.

Before Hydra runs anything, the command line is composed once with Hydra's compose API
and validated (`engine.config.validate`), so that an unknown config option, a misspelled
key or an out-of-range value stops the run with one line naming it and what is allowed.
Errors raised while building the datamodule, net or task are reported the same way.
`debug=true` shows full tracebacks instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from engine.config import ConfigError, register_schema, validate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "cfg"
# Hydra flags after which the command line is Hydra's business alone (help, config dumps...).
_HYDRA_ONLY_FLAGS = (
    "--help", "-h", "--hydra-help", "--version", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
)  # fmt: skip
_MULTIRUN_FLAGS = ("--multirun", "-m")


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose `cfg/<config_name>.yaml` with `overrides` as the entry scripts would.

    The result includes the `hydra` node, and `HydraConfig` is set, so interpolations
    such as `${hydra:runtime.choices.net}` resolve (tests use this too).
    """
    register_schema()
    GlobalHydra.instance().clear()
    with hydra.initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def choices_of(cfg: DictConfig) -> dict[str, Any]:
    """The option chosen in every config group, e.g. `{"net": "simple_cnn", ...}`."""
    return OmegaConf.to_container(cfg.hydra.runtime.choices)


def check_command_line(overrides: Sequence[str], config_name: str = "config") -> None:
    """Compose and validate the non-sweep overrides; raise `ConfigError` on any problem."""
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed += parser.parse_overrides([text])
        except HydraException as error:
            raise ConfigError(f"cannot parse the override '{text}': {_first_line(str(error))}") from error
    plain = [text for text, override in zip(overrides, parsed) if not override.is_sweep_override()]
    try:
        cfg = compose(plain, config_name)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_describe_composition_error(error, plain, config_name)) from error
    validate(cfg, choices_of(cfg))


@contextlib.contextmanager
def reporting_user_errors() -> Iterator[None]:
    """Turn errors raised while building things from the config into `ConfigError`s."""
    try:
        yield
    except ConfigError:
        raise
    except InstantiationException as error:
        message = _one_line(str(error.__cause__ or error))
        key = re.search(r"full_key: (\S+)", str(error))
        if key and f"{key.group(1)}." not in message:
            message = f"{key.group(1)}: {message}"
        raise ConfigError(message) from error
    except (ValueError, TypeError, FileNotFoundError, OmegaConfBaseException) as error:
        raise ConfigError(_one_line(str(error))) from error


def main(task: Callable[[DictConfig], Any], config_name: str = "config") -> None:
    """Validate the command line, then run `task(cfg)` under `@hydra.main`."""
    args = sys.argv[1:]
    debug = any(re.fullmatch(r"\+?debug=(true|True|1)", arg) for arg in args)
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if not any(arg.split("=")[0] in _HYDRA_ONLY_FLAGS for arg in args):
        overrides = [arg for arg in args if arg not in _MULTIRUN_FLAGS]
        try:
            check_command_line(overrides, config_name)
        except ConfigError as error:
            _exit_with(error, debug)
        finally:
            GlobalHydra.instance().clear()

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def hydra_entry(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except ConfigError as error:
            _exit_with(error, cfg.debug)

    register_schema()
    hydra_entry()


def _exit_with(error: ConfigError, debug: bool) -> None:
    if debug:
        raise error
    print(f"error: {_one_line(str(error))}", file=sys.stderr)
    sys.exit(2)


def _describe_composition_error(error: Exception, overrides: list[str], config_name: str) -> str:
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option} does not exist; available {group} options: {', '.join(sorted(error.options))}"
    innermost = error
    while innermost.__cause__ is not None:
        innermost = innermost.__cause__
    unknown = re.search(r"Could not override '([^']+)'", str(error))
    if unknown and isinstance(innermost, OmegaConfBaseException):
        return _describe_unknown_key(unknown.group(1), overrides, config_name)
    if isinstance(innermost, OmegaConfBaseException) and getattr(innermost, "full_key", None):
        return f"{innermost.full_key}: {_first_line(getattr(innermost, 'msg', str(innermost)))}"
    return _first_line(str(error))


def _describe_unknown_key(key: str, overrides: list[str], config_name: str) -> str:
    parent, _, _ = key.rpartition(".")
    others = [override for override in overrides if not override.lstrip("+~").startswith(key + "=")]
    try:
        root = compose(others, config_name)
    except (HydraException, OmegaConfBaseException):
        return f"unknown config key '{key}' (use +{key}=... to add a new key)"
    node = OmegaConf.select(root, parent) if parent else root
    while not isinstance(node, DictConfig):  # walk up to the deepest existing group
        parent = parent.rpartition(".")[0]
        node = OmegaConf.select(root, parent) if parent else root
    allowed = ", ".join(sorted(str(name) for name in node.keys() if name != "hydra"))
    return f"unknown config key '{key}'; keys under '{parent or '<top level>'}': {allowed}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def _one_line(text: str) -> str:
    return " ".join(text.split())
