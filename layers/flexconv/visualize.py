"""Pictures of continuous kernels and FlexConv masks, drawn with matplotlib's Agg backend
(no display needed; matplotlib is imported only when a picture is drawn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from layers.flexconv.ckconv import CKConv
from layers.flexconv.flexconv import FlexConv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_INCHES = 1.6


@torch.no_grad()
def full_kernel_and_mask(layer: CKConv, input_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, int]]]:
    """The layer's kernel on its whole grid for inputs of `input_size`, `(C_out, C_in, *N)`,
    zero where FlexConv crops it; its mask `(*N)` (None for CKConv); the crop window per dimension."""
    cropping = getattr(layer, "mask_dynamic_cropping", False)
    if isinstance(layer, FlexConv):
        layer.mask_dynamic_cropping = False
    try:
        kernel = layer.generate_kernel(input_size).float().cpu()
        sizes = layer.grid_size
        axes = [torch.linspace(-1, 1, size) if size > 1 else torch.zeros(1) for size in sizes]
        mask = layer.envelope([axis.to(layer.mask_mean.device) for axis in axes]).float().cpu() if isinstance(layer, FlexConv) else None
    finally:
        if isinstance(layer, FlexConv):
            layer.mask_dynamic_cropping = cropping
    windows = layer.crop_windows(sizes) if isinstance(layer, FlexConv) else [(0, size) for size in sizes]
    inside = torch.zeros(sizes, dtype=torch.bool)
    inside[tuple(slice(start, stop) for start, stop in windows)] = True
    return kernel * inside, mask, windows


def draw_kernels(layer: CKConv, input_size: Sequence[int] | None = None, max_kernels: int = 8, title: str | None = None) -> Figure:
    """Draw the mask (FlexConv) and the first `max_kernels` kernels `(o, i)` of `layer` on its
    whole grid, so the learned size shows against the horizon.

    2-D layers: images (the crop window outlined on the mask); 1-D layers: curves over the
    relative position, the crop boundary as a vertical line.

    Args:
        layer: a `CKConv`/`FlexConv` (1-D or 2-D).
        input_size: spatial size of the inputs the grid is built for; None: the layer's last
            input (its `grid_size`), or its fixed horizon.
        max_kernels: kernels drawn, in the order of `(o, i)` pairs.
        title: put before the figure's title (which names the kernel size and grid).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if max_kernels < 1:
        raise ValueError(f"draw_kernels: max_kernels={max_kernels} must be >= 1")
    if input_size is None:
        if layer.grid_size is None:
            raise ValueError("draw_kernels: the layer has not seen an input yet (horizon 'same'/'full'); pass input_size")
        input_size = layer.grid_size  # for a fixed horizon any size gives the same grid
    kernel, mask, windows = full_kernel_and_mask(layer, input_size)
    pairs = [(o, i) for o in range(kernel.shape[0]) for i in range(kernel.shape[1])][:max_kernels]
    panels = len(pairs) + (mask is not None)
    columns = min(panels, 4)
    rows = -(-panels // columns)
    figure = Figure(figsize=(columns * PANEL_INCHES * (1.6 if layer.dim == 1 else 1), rows * PANEL_INCHES))
    FigureCanvasAgg(figure)
    axes_list = [figure.add_subplot(rows, columns, index + 1) for index in range(panels)]
    labels = (["mask"] if mask is not None else []) + [f"kernel {o},{i}" for o, i in pairs]
    images = ([mask] if mask is not None else []) + [kernel[o, i] for o, i in pairs]
    for ax, label, image in zip(axes_list, labels, images):
        ax.set_title(label, fontsize=7)
        ax.tick_params(labelsize=5)
        if layer.dim == 1:
            positions = torch.linspace(-1, 1, image.shape[0]) if image.shape[0] > 1 else torch.zeros(1)
            ax.plot(positions.numpy(), image.numpy(), linewidth=0.8)
            start = windows[0][0]
            ax.axvline(positions[start].item(), color="0.5", linewidth=0.5)
        else:
            if label == "mask":
                ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            else:  # symmetric colour range: white is zero, so the cropped-away region shows as blank
                bound = max(image.abs().max().item(), 1e-12)
                ax.imshow(image.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
            if label == "mask":
                (top, bottom), (left, right) = windows
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="red", linewidth=0.8))
    size = "x".join(str(stop - start) for start, stop in windows)
    heading = f"{type(layer).__name__}: kernel {size} of {'x'.join(map(str, layer.grid_size))}"
    figure.suptitle(heading if title is None else f"{title}: {heading}", fontsize=8)
    figure.tight_layout()
    return figure
