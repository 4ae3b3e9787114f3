"""Command-line entry shared by `run_experiment.py` and `run_profiler.py`.

Before Hydra runs anything, the command line is composed once with Hydra's compose API
and validated (`engine.config.validate`), so that an unknown config option, a misspelled
key or an out-of-range value stops the run with one line naming it and what is allowed.
Errors raised while building the datamodule, net or task are reported the same way.
`debug=true` shows full tracebacks instead.
"""

from __future__ import annotations

import contextlib
import inspect
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
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from engine.config import ConfigError, register_schema, validate
from engine.nets import families_label
from engine.runlog import console_for_users

CONFIG_DIR = Path(__file__).resolve().parent.parent / "cfg"
# Hydra flags after which the command line is Hydra's business alone (help, config dumps...).
_HYDRA_ONLY_FLAGS = (
    "--help", "-h", "--hydra-help", "--version", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
)  # fmt: skip
_MULTIRUN_FLAGS = ("--multirun", "-m")


def trainer_arguments() -> list[str]:
    """The arguments of `pytorch_lightning.Trainer`, any of which `trainer.<name>=` may set."""
    import pytorch_lightning as pl

    return [name for name in inspect.signature(pl.Trainer.__init__).parameters if name != "self"]


def with_trainer_arguments(overrides: Sequence[str]) -> list[str]:
    """`trainer.<argument>=v` becomes `++trainer.<argument>=v` for every argument of
    `pytorch_lightning.Trainer`, so any of them can be set without a `+`."""
    allowed = set(trainer_arguments())
    rewritten = []
    for text in overrides:
        match = re.fullmatch(r"trainer\.(\w+)=.*", text, flags=re.DOTALL)
        rewritten.append(f"++{text}" if match and match.group(1) in allowed else text)
    return rewritten


def as_typed(override_dirname: str) -> str:
    """A job's `hydra.job.override_dirname` without the `++` of `with_trainer_arguments`
    (`++trainer.max_epochs=2,seed=0` -> `trainer.max_epochs=2,seed=0`): sweep job folders
    show what the user typed (the resolver `${as_typed:...}` of `cfg/config.yaml`)."""
    allowed = set(trainer_arguments())

    def typed(match: re.Match) -> str:
        return f"{match.group(1)}trainer.{match.group(2)}=" if match.group(2) in allowed else match.group(0)

    return re.sub(r"(^|,)\+\+trainer\.(\w+)=", typed, override_dirname)


def register_config() -> None:
    """Register what `cfg/config.yaml` needs besides its files: the schema and the
    resolvers of run names (`conv_families`, `as_typed`)."""
    register_schema()
    OmegaConf.register_new_resolver("conv_families", families_label, replace=True)
    OmegaConf.register_new_resolver("as_typed", as_typed, replace=True)


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose `cfg/<config_name>.yaml` with `overrides` as the entry scripts would.

    The result includes the `hydra` node, and `HydraConfig` is set, so interpolations
    such as `${hydra:runtime.choices.net}` resolve (tests use this too).
    """
    register_config()
    GlobalHydra.instance().clear()
    with hydra.initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra.compose(config_name, overrides=with_trainer_arguments(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def choices_of(cfg: DictConfig) -> dict[str, Any]:
    """The option chosen in every config group, e.g. `{"net": "simple_cnn", ...}`."""
    return OmegaConf.to_container(cfg.hydra.runtime.choices)


def check_command_line(overrides: Sequence[str], config_name: str = "config", multirun: bool = True) -> int:
    """The number of jobs of the command line, once every one is composed and validated
    (see `checked_jobs`)."""
    return len(checked_jobs(overrides, config_name, multirun))


def checked_jobs(overrides: Sequence[str], config_name: str = "config", multirun: bool = True) -> list[DictConfig]:
    """Compose and validate the command line; for a sweep, every one of its jobs.

    Returns each job's composed configuration; raises `ConfigError` (the same line a
    single run with the failing job's values would give) before any job starts.
    """
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed += parser.parse_overrides([text])
        except HydraException as error:
            raise ConfigError(f"cannot parse the override '{text}': {_first_line(str(error))}") from error
    sweeps = [text for text, override in zip(overrides, parsed) if override.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(f"{sweeps[0]} gives several values: add -m (--multirun) to run one job per combination")
    if sweeps and not any(text.startswith("hydra/sweeper=") for text in overrides):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        jobs = [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]
    else:
        jobs = [[text for text, override in zip(overrides, parsed) if not override.is_sweep_override()]]
    configs = []
    for job in jobs:
        try:
            cfg = compose(job, config_name)
        except (HydraException, OmegaConfBaseException) as error:
            raise ConfigError(_describe_composition_error(error, job, config_name)) from error
        validate(cfg, choices_of(cfg))
        configs.append(cfg)
    return configs


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
    except (ValueError, TypeError, FileNotFoundError, ConnectionError, OmegaConfBaseException, MisconfigurationException) as error:
        raise ConfigError(_one_line(str(error))) from error


def main(task: Callable[[DictConfig], Any], config_name: str = "config") -> None:
    """Validate the command line (every job of a sweep), then run `task(cfg)` under `@hydra.main`.

    `--help` prints `help_text()`; `trainer.<argument>=` works for every argument of
    `pytorch_lightning.Trainer` (see `with_trainer_arguments`). The console shows what a
    user needs, the run's log file everything (`engine.runlog.console_for_users`).
    """
    args = sys.argv[1:]
    if any(arg in ("--help", "-h") for arg in args):
        print(help_text(config_name))
        sys.exit(0)
    debug = any(re.fullmatch(r"\+?debug=(true|True|1)", arg) for arg in args)
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    new_runs_folders: set[Path] = set()  # made by this command: removed again if it leaves them empty
    if not any(arg.split("=")[0] in _HYDRA_ONLY_FLAGS for arg in args):
        overrides = [arg for arg in args if arg not in _MULTIRUN_FLAGS]
        try:
            jobs = checked_jobs(overrides, config_name, multirun=any(arg in _MULTIRUN_FLAGS for arg in args))
            new_runs_folders = {Path(cfg.paths.runs) for cfg in jobs if not Path(cfg.paths.runs).exists()}
        except ConfigError as error:
            _exit_with(error, debug)
        finally:
            GlobalHydra.instance().clear()
    sys.argv = [sys.argv[0], *with_trainer_arguments(args)]

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def hydra_entry(cfg: DictConfig) -> Any:
        sys.argv = [sys.argv[0], *args]  # Hydra has read its form; the run shows the user's
        try:
            return task(cfg)
        except ConfigError as error:
            _exit_with(error, cfg.debug)

    register_config()
    try:
        with console_for_users():
            hydra_entry()
    finally:
        for folder in new_runs_folders:
            _remove_empty_folders(folder)


def config_groups() -> dict[str, list[str]]:
    """Every user-facing config group of `cfg/` with its options (not the internal `common`)."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in sorted(CONFIG_DIR.iterdir())
        if folder.is_dir() and folder.name not in ("common", "hydra")
    }


HELP_EXAMPLES = """\
  python run_experiment.py                                       # the default: SimpleCNN on 8x8 digits
  python run_experiment.py net=resnet20 dataset=cifar10 optimizer=sgd train.lr=0.1
  python run_experiment.py experiment=box_mnist paths.data=../shared/data
  python run_experiment.py -m seed=0,1,2 train.lr=1e-3,3e-3      # a sweep: one job per combination
  python run_experiment.py resume=last                           # continue the newest run of this name
  python run_profiler.py net=boxenet dataset=cityscapes          # params, MACs, latency, memory"""

HELP_KEYS = """\
  train.epochs, train.batch_size, train.lr, train.weight_decay   training schedule
  train.do=false            test only (needs pretrained, pretrained_wandb or resume)
  pretrained=<file.ckpt>    start from these weights; pretrained_wandb=<entity/project/artifact:version>
  resume=last|<file.ckpt>   continue a run (same folder, same W&B run; a sweep: repeat its -m command)
  seed, deterministic       reproducibility; debug=true: a few batches, no upload, full tracebacks
  paths.data, paths.runs    where data is read and runs are written
  trainer.<argument>        any argument of pytorch_lightning.Trainer, e.g. trainer.limit_train_batches=20
  callbacks.last_checkpoint.train_time_interval=<minutes>   also save last.ckpt every N minutes"""


def help_text(config_name: str = "config") -> str:
    """`--help`: the entry script's usage line, the config groups, examples and common keys."""
    usage = (sys.modules["__main__"].__doc__ or "").strip().split("\n\n")[0]
    groups = "\n".join(f"  {group:<10} {', '.join(options)}" for group, options in config_groups().items())
    return (
        f"{usage or 'Usage: python run_experiment.py [group=option ...] [key=value ...]'}\n\n"
        f"Config groups (choose with group=option; `cfg/<group>/<option>.yaml`):\n{groups}\n\n"
        f"Keys (change with key=value; misspelled keys and bad values stop the run with one line):\n{HELP_KEYS}\n\n"
        f"Examples:\n{HELP_EXAMPLES}\n\n"
        "More: README.md. The composed configuration: --cfg job. Hydra's own options: --hydra-help."
    )


def _remove_empty_folders(root: Path) -> None:
    """Remove `root` and the folders under it that hold no file (e.g. `multirun/` after a
    rejected sweep job removed its own folder)."""
    if not root.is_dir():
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(Path(entry[0]).parts)):
        with contextlib.suppress(OSError):  # not empty: it holds a run
            Path(folder).rmdir()


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
    if parent == "trainer":
        return f"unknown config key '{key}': pytorch_lightning.Trainer takes {', '.join(sorted(trainer_arguments()))}"
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
