"""What both ERF commands (`analysis.erf`, `analysis.compare`) read and where they write:
the inputs whose gradients make the map, and the default output folder."""

from __future__ import annotations

import datetime
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

INPUTS = ("noise", "data")
OUTPUT_FOLDER = "{runs}/erf/{kind}/{name}/{time}"  # kind: single or compare


def sample_inputs(cfg: DictConfig, kind: str, samples: int, seed: int) -> torch.Tensor:
    """`(samples, C, *S)`: standard-normal noise, or the first validation inputs of `cfg.dataset`."""
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(samples, cfg.dataset.in_channels, *cfg.dataset.input_size, generator=generator)
    datamodule = instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = []
    for batch in datamodule.val_dataloader():
        batches.append(batch[0] if isinstance(batch, (tuple, list)) else batch)
        if sum(len(inputs) for inputs in batches) >= samples:
            break
    return torch.cat(batches)[:samples]


def default_out(cfg: DictConfig, kind: str) -> Path:
    """`OUTPUT_FOLDER` of this run: `<paths.runs>/erf/<kind>/<name>/<time>`."""
    time = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    return Path(OUTPUT_FOLDER.format(runs=cfg.paths.runs, kind=kind, name=cfg.name, time=time))


def output_folder_help() -> str:
    """The default output folders, as `--help` shows them."""
    single, compare = (OUTPUT_FOLDER.format(runs="<paths.runs>", kind=kind, name="<name>", time="<time>") for kind in ("single", "compare"))
    return f"{single}; with --compare: {compare}"
