"""Box convolutions (Burkov & Lempitsky, NeurIPS 2018).

`BoxConv2d` (module), `box_conv2d` (functional, a registered torch op), the dense
equivalent for checks and baselines, and the `box` conv family factory.
"""

from layers.box.box_conv import BoxConv2d
from layers.box.dense import box_conv2d_dense, box_kernel
from layers.box.factory import BoxPointwiseConv2d, box_conv
from layers.box.functional import box_conv2d

__all__ = ["BoxConv2d", "BoxPointwiseConv2d", "box_conv", "box_conv2d", "box_conv2d_dense", "box_kernel"]
