"""Build the configured net with the configured convolution family (`layers.factory`).

Per-convolution families reach the net through its `conv` argument (`net.conv: ${conv}`);
whole-model families (`ModelConversion`) convert the net built with plain convolutions.
Every entry point builds nets here, so the two kinds need no case anywhere else.
`families_label` names runs after the families a built net really contains.
"""

from __future__ import annotations

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from engine.profiling import conv_families
from layers.factory import ModelConversion, standard_conv

_LABELS: dict[str, str] = {}  # resolved net and conv settings -> label (`name` is resolved often)


def is_model_conversion(conv_cfg: DictConfig) -> bool:
    """Whether a `conv` config node names a whole-model family (without building anything)."""
    target = conv_cfg.get("_target_")
    if target is None or conv_cfg.get("_partial_", False):
        return False
    target_type = get_class(target) if isinstance(target, str) else target
    return isinstance(target_type, type) and issubclass(target_type, ModelConversion)


def build_net(cfg: DictConfig) -> nn.Module:
    """`cfg.net` built with `cfg.conv`: `(B, C, *S) -> outputs`, whatever the family's kind."""
    if not is_model_conversion(cfg.conv):
        return instantiate(cfg.net)
    conversion: ModelConversion = instantiate(cfg.conv)
    plain = instantiate(cfg.net, conv=standard_conv) if "conv" in cfg.net else instantiate(cfg.net)
    return conversion(plain)


def families_label(fallback: str, *, _root_: DictConfig) -> str:
    """The convolution families of the net `_root_` builds, as `run_profiler.py` reports them,
    joined by `+` (e.g. `box+standard` for `net=box_mnist`); the resolver `${conv_families:...}`
    of `cfg/config.yaml`'s `name`. `fallback` (the `conv` choice) when the net cannot be built:
    the run then stops and says why. Building leaves the random number generators as they were."""
    try:
        key = repr([OmegaConf.to_container(_root_[group], resolve=True) for group in ("net", "conv")])
        if key not in _LABELS:
            with torch.random.fork_rng(devices=[]):
                _LABELS[key] = "+".join(conv_families(build_net(_root_))) or fallback
    except Exception:  # any build error: the run reports it itself, in one line
        return fallback
    return _LABELS[key]
