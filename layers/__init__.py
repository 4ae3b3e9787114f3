"""Layers with large receptive fields, importable on their own (no Hydra, Lightning or data).

One family per sub-package; each has a pure-PyTorch reference path and, where it pays,
a compiled fast path chosen automatically.
"""

from layers.factory import ConvFactory, standard_conv

__all__ = ["ConvFactory", "standard_conv"]
