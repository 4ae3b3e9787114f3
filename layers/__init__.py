"""Layers with large receptive fields, importable on their own (no Hydra, Lightning or data).

One family per sub-package; each has a pure-PyTorch reference path and, where it pays,
a compiled fast path chosen automatically.
"""

from layers.box import BoxConv2d, box_conv2d
from layers.checkered import CheckeredConv2d, convert_to_checkered
from layers.dcls import Dcls1d, Dcls2d, Dcls3d
from layers.factory import ConvFactory, standard_conv
from layers.flexconv import CKConv1d, CKConv2d, FlexConv1d, FlexConv2d
from layers.octave import OctaveConv, convert_to_octave

__all__ = [
    "box_conv2d",
    "BoxConv2d",
    "CheckeredConv2d",
    "CKConv1d",
    "CKConv2d",
    "convert_to_checkered",
    "convert_to_octave",
    "ConvFactory",
    "Dcls1d",
    "Dcls2d",
    "Dcls3d",
    "FlexConv1d",
    "FlexConv2d",
    "OctaveConv",
    "standard_conv",
]
