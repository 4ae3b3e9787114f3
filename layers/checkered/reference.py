"""The straightforward checkered convolution: four strided convolutions, keep what the sampler picks.

This is how the paper's code computes a stride-2 checkered layer (Sadigh & Sen, arXiv
1805.10766): a `(depth, k, k)` 3-D convolution of the padded input at all four offsets
of the 2x2 window, then, per submap, the outputs of its sampler's offsets. Slow and
wasteful (half the work is thrown away for the checkered samplers), but obviously
correct: the tests trust it, and the benchmark measures the fused form against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from layers.checkered.functional import Padding, as_submaps
from layers.checkered.sampling import Offset

_OFFSETS = ((0, 0), (1, 1), (0, 1), (1, 0))


def checkered_conv2d_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    stride: int = 1,
    padding: Padding = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    sampling: list[list[Offset]] | None = None,
) -> Tensor:
    """Same contract as `functional.checkered_conv2d`."""
    x = as_submaps(x, "checkered_conv2d_reference")
    kernel = weight if weight.dim() == 5 else weight.unsqueeze(2)
    padded = F.pad(x, padding)
    if stride == 1:
        return F.conv3d(padded, kernel, bias, 1, 0, (1, *dilation), groups)
    shifted = {}
    for dy, dx in _OFFSETS:
        moved = F.pad(padded[..., dy:, dx:], (0, dx, 0, dy))  # read at (dy, dx), zeros past the end
        shifted[dy, dx] = F.conv3d(moved, kernel, bias, (1, 2, 2), 0, (1, *dilation), groups)
    return torch.cat([torch.stack([shifted[offset][:, :, s] for s, offset in enumerate(group)], 2) for group in sampling], 2)
