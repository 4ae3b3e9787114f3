"""Pictures of the learned positions (and sigmas) of a DCLS layer, drawn with matplotlib's
Agg backend (no display needed; matplotlib is imported only when a picture is drawn)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from layers.dcls.dcls_layer import _DclsNd
from layers.dcls.reference import GAUSS_SIGMA_OFFSET, MAX_WIDTH_OFFSET, axis_sizes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_INCHES = 2.5


def draw_positions(layer: _DclsNd, max_filters: int = 8) -> Figure:
    """One panel per filter (the first `max_filters` `(C_out, C_in/g)` pairs): each element
    is a dot at its position in the dilated kernel (x across, y down; 1-D layers on one row,
    3-D layers seen along z), its area proportional to |weight|, red for positive and blue
    for negative weights. `gauss` layers draw each element's 1-sigma ellipse, `max` its
    triangle's half-width box.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse, Rectangle

    sizes = axis_sizes(layer.dilated_kernel_size)  # P[0] (x) first
    P = layer.P.detach().float().cpu().flatten(1, 2)  # (ndim, filters, K)
    weight = layer.weight.detach().float().cpu().flatten(0, 1)  # (filters, K)
    SIG = None if layer.SIG is None else layer.SIG.detach().float().cpu().flatten(1, 2).abs()
    filters = min(max_filters, weight.shape[0])
    columns = min(filters, 4)
    rows = -(-filters // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows), squeeze=False)
    scale = 120.0 / max(weight.abs().max().item(), 1e-12)
    half_x, half_y = sizes[0] // 2, (sizes[1] // 2 if len(sizes) > 1 else 0)
    for index, ax in enumerate(axes.flat):
        if index >= filters:
            ax.axis("off")
            continue
        x = P[0, index]
        y = P[1, index] if len(sizes) > 1 else torch.zeros_like(x)
        colours = ["tab:red" if w >= 0 else "tab:blue" for w in weight[index]]
        if SIG is not None:
            offset = GAUSS_SIGMA_OFFSET if layer.version == "gauss" else MAX_WIDTH_OFFSET
            width = SIG[0, index] + offset
            height = SIG[1, index] + offset if len(sizes) > 1 else torch.full_like(width, 0.3)
            for k in range(x.numel()):
                centre = (x[k].item(), y[k].item())
                if layer.version == "gauss":
                    patch = Ellipse(centre, 2 * width[k].item(), 2 * height[k].item(), fill=False, color=colours[k], lw=0.6)
                else:
                    corner = (centre[0] - width[k].item(), centre[1] - height[k].item())
                    patch = Rectangle(corner, 2 * width[k].item(), 2 * height[k].item(), fill=False, color=colours[k], lw=0.6)
                ax.add_patch(patch)
        ax.scatter(x, y, s=(weight[index].abs() * scale).clamp(min=2), c=colours)
        ax.set_xlim(-half_x - 0.5, sizes[0] - half_x - 0.5)
        ax.set_ylim(sizes[1] - half_y - 0.5 if len(sizes) > 1 else 1, -half_y - 0.5 if len(sizes) > 1 else -1)
        ax.set_aspect("equal")
        ax.grid(True, lw=0.3)
        ax.set_title(f"filter {index}", fontsize=8)
        ax.tick_params(labelsize=6)
    figure.tight_layout()
    return figure
