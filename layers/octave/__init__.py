"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv:1904.05049).

`OctaveConv` (module on `(x_h, x_l)` pairs), `octave_conv2d` (fused function) and its
four-convolution reference, the pair versions of norms/activations/pools, residual and
trunk wrappers, `convert_to_octave` and the `octave` conversion for `conv=octave`.
"""

from layers.octave.blocks import (
    OctaveApply,
    OctaveBatchNorm,
    OctaveConvBN,
    OctaveConvBNAct,
    OctaveResidual,
    OctaveTrunk,
    octave_add,
    octave_merge,
)
from layers.octave.convert import convert_features, convert_to_octave, octave_layer
from layers.octave.factory import OctaveConversion
from layers.octave.functional import OctaveWeights, downsample, octave_conv2d, upsample_to
from layers.octave.octave_conv import OctaveConv
from layers.octave.reference import octave_conv2d_reference

__all__ = [
    "OctaveApply", "OctaveBatchNorm", "OctaveConv", "OctaveConvBN", "OctaveConvBNAct", "OctaveConversion", "OctaveResidual",
    "OctaveTrunk", "OctaveWeights", "convert_features", "convert_to_octave", "downsample", "octave_add", "octave_conv2d",
    "octave_conv2d_reference", "octave_layer", "octave_merge", "upsample_to",
]  # fmt: skip
