"""Checkered subsampling and multisampling (Sadigh & Sen, arXiv 1805.10766).

Feature maps carry a submap dimension `(N, C, S, H, W)`. `CheckeredConv2d` and the
checkered pools subsample by keeping two (or three, or four) pixels of every 2x2 window
in different submaps instead of one; `convert_to_checkered` turns any 2-D CNN into a
CCNN, and `CheckeredConversion` is the `conv=checkered` family (a whole-model conversion).
"""

from layers.checkered.checkered_conv import CheckeredConv2d, SubmapSampler
from layers.checkered.convert import CheckeredConversion, convert_to_checkered
from layers.checkered.functional import checkered_avg_pool2d, checkered_conv2d, checkered_max_pool2d
from layers.checkered.pooling import CheckeredAdaptiveAvgPool2d, CheckeredAdaptiveMaxPool2d, CheckeredAvgPool2d, CheckeredMaxPool2d
from layers.checkered.reference import checkered_conv2d_reference
from layers.checkered.sampling import SAMPLERS, lattice_patterns, offset_groups

__all__ = [
    "SAMPLERS",
    "CheckeredAdaptiveAvgPool2d",
    "CheckeredAdaptiveMaxPool2d",
    "CheckeredAvgPool2d",
    "CheckeredConv2d",
    "CheckeredConversion",
    "CheckeredMaxPool2d",
    "SubmapSampler",
    "checkered_avg_pool2d",
    "checkered_conv2d",
    "checkered_conv2d_reference",
    "checkered_max_pool2d",
    "convert_to_checkered",
    "lattice_patterns",
    "offset_groups",
]
