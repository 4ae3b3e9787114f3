"""Cross-resolution use of continuous kernels (Romero et al., arXiv:2110.08059, Sec. 5.3).

A continuous kernel trained on inputs of resolution `source` can be sampled for inputs
of resolution `target`: the same function on a grid `target / source` times finer. A
convolution sums over the grid, so the response grows with the number of samples; the
normaliser `(source / target)^D` keeps it.
"""

from __future__ import annotations

from torch import nn

from layers.flexconv.ckconv import CKConv


def resample_kernels(net: nn.Module, source_res: int, target_res: int) -> int:
    """Prepare every `CKConv`/`FlexConv` of `net` for inputs `target_res / source_res` times finer.

    Multiplies each layer's `sampling_rate_norm` by `(source_res / target_res)^dim` and scales a
    fixed (int) horizon to the finer grid, `(h - 1) * target / source + 1` (`same`/`full`
    follow the input by themselves). Relative to the current state, so it composes.

    Returns:
        The number of layers changed.
    """
    if source_res < 1 or target_res < 1:
        raise ValueError(f"resample_kernels: source_res={source_res} and target_res={target_res} must be >= 1")
    ratio = target_res / source_res
    changed = 0
    for module in net.modules():
        if not isinstance(module, CKConv):
            continue
        if isinstance(module.horizon, int):
            scaled = (module.horizon - 1) * ratio + 1
            if not scaled.is_integer() or int(scaled) % 2 == 0:
                raise ValueError(
                    f"resample_kernels: horizon={module.horizon} at {source_res} has no odd equivalent at {target_res} "
                    f"({scaled:g}); use horizon='same' or resolutions whose ratio keeps it odd"
                )
            module.horizon = int(scaled)
            module.grid_size = (module.horizon,) * module.dim
        module.sampling_rate_norm.mul_((source_res / target_res) ** module.dim)
        changed += 1
    return changed
