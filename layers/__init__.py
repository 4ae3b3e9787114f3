"""Layers with large receptive fields, importable on their own (no Hydra, Lightning or data).

One family per sub-package; each has a pure-PyTorch reference path and, where it pays,
a compiled fast path chosen automatically.
"""

from layers.box import BoxConv2d, box_conv2d
from layers.factory import ConvFactory, standard_conv

__all__ = ["BoxConv2d", "ConvFactory", "box_conv2d", "standard_conv"]
