"""Build the configured net with the configured convolution family (`layers.factory`).

Per-convolution families reach the net through its `conv` argument (`net.conv: ${conv}`);
whole-model families (`ModelConversion`) convert the net built with plain convolutions.
Every entry point builds nets here, so the two kinds need no case anywhere else.
"""

from __future__ import annotations

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from torch import nn

from layers.factory import ModelConversion, standard_conv


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
