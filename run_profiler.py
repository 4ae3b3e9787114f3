"""Profile a net: `python run_profiler.py net=<net> dataset=<dataset> [conv=<family>] [profile.batch_size=8]`.

Prints the parameter count, MACs per sample, forward and forward+backward latency and
peak memory; the last line is one JSON object with keys params, macs, input_shape,
fwd_ms, fwd_bwd_ms, peak_mem_mb and device. Needs no data: the input shape comes from
the dataset's config.
"""

import json

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from engine.cli import main, reporting_user_errors
from engine.profiling import format_count, measure


def profile(cfg: DictConfig) -> dict:
    choices = HydraConfig.get().runtime.choices
    with reporting_user_errors():
        net = instantiate(cfg.net)
    device_name = cfg.profile.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    input_shape = (cfg.dataset.in_channels, *cfg.dataset.input_size)
    cost = measure(net, input_shape, cfg.profile.batch_size, torch.device(device_name), cfg.profile.warmup, cfg.profile.repeats)
    print(f"net={choices.net} dataset={choices.dataset} conv={choices.conv}")
    print(f"parameters: {cost.params:,} ({format_count(cost.params)})")
    print(f"MACs per sample: {format_count(cost.macs)} at input {tuple(input_shape)}")
    print(
        f"latency (batch {cfg.profile.batch_size}, {cost.device}, median of {cfg.profile.repeats}): "
        f"forward {cost.fwd_ms:.2f} ms, forward+backward {cost.fwd_bwd_ms:.2f} ms"
    )
    print(f"peak memory (forward+backward): {cost.peak_mem_mb:.1f} MB")
    print(json.dumps(cost.as_dict()))
    return cost.as_dict()


if __name__ == "__main__":
    main(profile)
