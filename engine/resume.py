"""Which checkpoint `resume=last|<path>` continues, and whether it fits this run.

`resume=last` continues the newest earlier run of the same experiment: for a single run,
the newest folder under `<paths.runs>/<name>/`; for a job of a sweep (`-m`), the newest
job folder with the same overrides under the sweep folders of `<paths.runs>/multirun/`,
so re-running the same `-m` command with `resume=last` continues every job. Run folders
are named by their start time, so their names sort by age.

A checkpoint is refused, before any work, when it cannot be read or was written by a run
that builds another model (other `net`, `conv` or net/conv settings such as `num_classes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from engine.checkpointing import RUN_KEY
from engine.config import ConfigError

LAST = "last.ckpt"
ZIP_MAGIC = b"PK\x03\x04"  # how torch.save's format starts; torch can memory-map only this one


def read_checkpoint(path: Path, option: str) -> dict[str, Any]:
    """Load `path` (tensors only; memory-mapped when it is in `torch.save`'s zip format);
    `option` (e.g. `resume=x.ckpt`) names it in errors."""
    if not path.is_file():
        raise ConfigError(f"{option}: no such checkpoint file")
    with path.open("rb") as file:
        zipped = file.read(4) == ZIP_MAGIC
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as error:  # torch.load raises many types for a file that is not a checkpoint
        if not zipped:  # in neither of torch's formats: its advice on re-saving would mislead
            raise ConfigError(f"{option}: {path} is not a PyTorch checkpoint") from error
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ConfigError(f"{option}: {path} is not a readable PyTorch checkpoint ({first[:160]})") from error
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{option}: {path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    return checkpoint


def build_identity(cfg: DictConfig, choices: Mapping[str, Any]) -> dict[str, Any]:
    """What a run builds: the net and conv choices and their resolved settings, flattened."""
    settings: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}")
        else:
            settings[prefix] = node

    for group in ("net", "conv"):
        walk(OmegaConf.to_container(cfg[group], resolve=True), group)
    settings.pop("net.conv", None)
    settings = {key: value for key, value in settings.items() if not key.startswith("net.conv.")}  # = conv.*
    return {"net": choices.get("net"), "conv": choices.get("conv"), "settings": settings}


def check_same_build(checkpoint: Mapping[str, Any], identity: Mapping[str, Any], option: str) -> None:
    """Refuse a checkpoint whose run built another model; silent for foreign checkpoints."""
    saved = (checkpoint.get(RUN_KEY) or {}).get("build") or {}
    if not saved:
        return
    differences = [f"{group}={saved.get(group)} (this run: {group}={identity.get(group)})" for group in ("net", "conv") if saved.get(group) != identity.get(group)]
    if not differences:
        before, now = saved.get("settings", {}), identity.get("settings", {})
        differences = [
            f"{key}={before.get(key, '<unset>')} (this run: {now.get(key, '<unset>')})"
            for key in sorted(set(before) | set(now))
            if before.get(key, "<unset>") != now.get(key, "<unset>")
        ]
    if differences:
        raise ConfigError(
            f"{option}: the checkpoint's run built another model: {'; '.join(differences[:4])}"
            f"{'; ...' if len(differences) > 4 else ''}. Resume with the same options, or start a new run without resume"
        )


def check_fits(checkpoint: Mapping[str, Any], module: nn.Module, option: str) -> None:
    """Refuse a checkpoint whose weights do not have the names and shapes of `module`'s."""
    saved = checkpoint.get("state_dict")
    if not isinstance(saved, Mapping):
        raise ConfigError(f"{option}: the checkpoint holds no 'state_dict' of a training run (a Lightning checkpoint is needed)")
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = [key for key in expected if key in saved and tuple(saved[key].shape) != expected[key]]
    if reshaped:
        key = reshaped[0]
        raise ConfigError(f"{option}: the checkpoint does not fit the configured net: {key} has shape {tuple(saved[key].shape)}, the net needs {expected[key]}")
    if missing or unexpected:
        detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ConfigError(
            f"{option}: the checkpoint does not fit the configured net ({len(missing)} weights missing, "
            f"{len(unexpected)} unexpected; {detail})"
        )


def single_run_folders(runs_dir: Path, name: str, exclude: Path | None = None) -> list[Path]:
    """Earlier run folders of a single run named `name`, oldest first."""
    folder = runs_dir / name
    found = [path for path in folder.iterdir() if path.is_dir()] if folder.is_dir() else []
    return sorted((path for path in found if exclude is None or path.resolve() != exclude.resolve()), key=lambda path: path.name)


def sweep_job_folders(sweeps_dir: Path, override_dirname: str, exclude: Path | None = None) -> list[Path]:
    """Earlier folders of the sweep job with these overrides (`<num>_<override_dirname>`), oldest first."""
    found = [
        job
        for sweep in (sweeps_dir.iterdir() if sweeps_dir.is_dir() else ())
        if sweep.is_dir()
        for job in sweep.iterdir()
        if job.is_dir() and job.name.partition("_")[0].isdigit() and job.name.partition("_")[2] == override_dirname
    ]
    return sorted((job for job in found if exclude is None or job.resolve() != exclude.resolve()), key=lambda job: (job.parent.name, job.name))


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder `checkpoint` was saved in (`<run>/checkpoints/<file>.ckpt`, beside the
    run's `config.yaml`), where a run resumed from it continues; None for a checkpoint kept
    anywhere else, whose resumed run writes to a new folder."""
    folder = checkpoint.resolve().parent
    return folder.parent if folder.name == "checkpoints" and (folder.parent / "config.yaml").is_file() else None


def find_resume_checkpoint(resume: str, previous_runs: Iterable[Path], described_as: str) -> Path:
    """`resume=last`: the `last.ckpt` of the newest of `previous_runs` (oldest first);
    otherwise `resume` is a checkpoint path. `described_as` names where runs were looked for."""
    if resume != "last":
        path = Path(resume)
        if not path.is_file():
            raise ConfigError(f"resume={resume}: no such checkpoint file; use resume=last or a path to a .ckpt")
        return path
    runs = list(previous_runs)
    if not runs:
        raise ConfigError(f"resume=last: no earlier run in {described_as}; train first, or pass resume=<path to a .ckpt>")
    newest = runs[-1]
    last = newest / "checkpoints" / LAST
    if last.is_file():
        return last
    others = sorted((newest / "checkpoints").glob("*.ckpt")) + [run / "checkpoints" / LAST for run in reversed(runs[:-1]) if (run / "checkpoints" / LAST).is_file()]
    hint = f"pass resume={others[0]} to continue from that checkpoint" if others else "no other checkpoint exists: start a new run without resume"
    raise ConfigError(f"resume=last: the newest run {newest} has no checkpoints/{LAST}; {hint}")
