"""Profile a net: `python run_profiler.py net=<net> dataset=<dataset> [conv=<family>] [profile.batch_size=8]`.

Prints the convolution families the built net contains, the parameter count, MACs per
sample, forward and forward+backward latency and peak memory; the last line is one JSON
object with keys params, macs, input_shape, fwd_ms, fwd_bwd_ms, peak_mem_mb, device and
conv_families. Needs no data: the input shape comes from the dataset's config.
`profile.repeats=0` is the quick look: parameters, MACs and families, no timing (the
three timing keys are null).
"""

import json

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from engine.cli import main, reporting_user_errors
from engine.config import ConfigError
from engine.nets import build_net
from engine.profiling import format_count, measure


def profile(cfg: DictConfig) -> dict:
    choices = HydraConfig.get().runtime.choices
    with reporting_user_errors():
        net = build_net(cfg)
    device_name = cfg.profile.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    input_shape = (cfg.dataset.in_channels, *cfg.dataset.input_size)
    try:
        cost = measure(net, input_shape, cfg.profile.batch_size, torch.device(device_name), cfg.profile.warmup, cfg.profile.repeats)
    except (RuntimeError, ValueError) as error:  # what torch raises for shapes a net cannot take
        raise ConfigError(
            f"net={choices.net} cannot run a batch of profile.batch_size={cfg.profile.batch_size} inputs of shape {input_shape} "
            f"(dataset={choices.dataset}): {str(error).strip().splitlines()[0]}"
            + (" (use profile.batch_size >= 2)" if cfg.profile.batch_size < 2 else "")
        ) from error
    families = ", ".join(f"{family} ({count} modules)" for family, count in cost.conv_families.items()) or "none"
    print(f"net={choices.net} dataset={choices.dataset} conv={choices.conv}")
    print(f"convolution families in the net: {families}")
    print(f"parameters: {cost.params:,} ({format_count(cost.params)})")
    print(f"MACs per sample: {format_count(cost.macs)} at input {tuple(input_shape)}")
    if cfg.profile.repeats == 0:
        print("latency and peak memory: not measured (profile.repeats=0)")
    else:
        print(
            f"latency (batch {cfg.profile.batch_size}, {cost.device}, median of {cfg.profile.repeats}): "
            f"forward {cost.fwd_ms:.2f} ms, forward+backward {cost.fwd_bwd_ms:.2f} ms"
        )
        print(f"peak memory (forward+backward): {cost.peak_mem_mb:.1f} MB")
    print(json.dumps(cost.as_dict()))
    return cost.as_dict()


if __name__ == "__main__":
    main(profile)
