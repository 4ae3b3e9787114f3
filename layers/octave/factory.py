"""The `octave` family for the `conv` config group (`conv=octave`): a whole-model conversion."""

from __future__ import annotations

from torch import nn

from layers.factory import ModelConversion
from layers.octave.convert import convert_to_octave
from layers.octave.functional import HIGH_TO_LOW_DOWNSAMPLING
from layers.octave.octave_conv import check_alpha


class OctaveConversion(ModelConversion):
    """`convert_to_octave(model, alpha, stage_alphas, high_to_low=..., low_to_high=..., high_to_low_downsample=..., impl=...)`,
    its values checked up front."""

    def __init__(self, alpha: float = 0.25, stage_alphas: list[float] | None = None, high_to_low: bool = True,
                 low_to_high: bool = True, high_to_low_downsample: str = "avg_pool", impl: str = "auto") -> None:  # fmt: skip
        check_alpha(alpha)
        for value in stage_alphas or []:
            check_alpha(value, "stage_alphas")
        self.alpha, self.stage_alphas = alpha, None if stage_alphas is None else list(stage_alphas)
        if high_to_low_downsample not in HIGH_TO_LOW_DOWNSAMPLING:
            raise ValueError(f"octave: high_to_low_downsample={high_to_low_downsample!r} is not one of {list(HIGH_TO_LOW_DOWNSAMPLING)}")
        self.options = {"high_to_low": high_to_low, "low_to_high": low_to_high, "high_to_low_downsample": high_to_low_downsample, "impl": impl}

    def __call__(self, model: nn.Module) -> nn.Module:
        return convert_to_octave(model, self.alpha, self.stage_alphas, **self.options)
