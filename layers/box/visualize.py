"""Pictures of the learned boxes of a `BoxConv2d`, drawn with matplotlib's Agg backend
(no display needed; matplotlib is imported only when a picture is drawn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from layers.box.box_conv import BoxConv2d

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_INCHES = 5.0  # the longer side of a new figure


def draw_boxes(
    layer: BoxConv2d,
    image: Tensor | None = None,
    channels: Sequence[int] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw the boxes of `layer` as rectangles around the centre pixel of `image`.

    Box `(c, f)` applied at output pixel `(i, j)` averages input rows `[i + x_min, i + x_max + 1)`
    and columns `[j + y_min, j + y_max + 1)`; the rectangle drawn is that region for the
    centre pixel, i.e. what each box sees from there. One colour per box; thin grey lines
    mark the centre, and the view widens to show boxes that reach past the image.

    Args:
        layer: the box convolution whose boxes are drawn.
        image: `(C, H, W)` (shown as its channel mean) or `(H, W)`, in grey underneath, in
            the layer's pixel units; None: a blank canvas of the layer's
            `(max_input_h, max_input_w)`.
        channels: input channels whose `num_filters` boxes are drawn; None: all of them.
        ax: axes to draw into; None: a new figure.

    Returns:
        The figure holding the drawing (`ax.figure` when `ax` is given).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    channels = list(range(layer.in_planes)) if channels is None else list(channels)
    outside = [channel for channel in channels if not 0 <= channel < layer.in_planes]
    if not channels or outside:
        raise ValueError(f"draw_boxes: channels={channels} must be a non-empty list of channels in [0, {layer.in_planes})")
    background = _grey_background(image, layer)
    height, width = background.shape
    if ax is None:
        scale = FIGURE_INCHES / max(height, width)
        figure = Figure(figsize=(width * scale, height * scale))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    ax.imshow(background.numpy(), cmap="gray")
    centre_row, centre_col = height // 2, width // 2
    ax.axhline(centre_row, color="0.5", linewidth=0.5)
    ax.axvline(centre_col, color="0.5", linewidth=0.5)

    x_min, x_max, y_min, y_max = (coordinate.detach().float().cpu()[channels].flatten() for coordinate in layer.box_coordinates())
    # pixel p spans [p - 0.5, p + 0.5] in imshow's coordinates
    top, bottom = centre_row + x_min - 0.5, centre_row + x_max + 0.5
    left, right = centre_col + y_min - 0.5, centre_col + y_max + 0.5
    colours = matplotlib.colormaps["hsv"](torch.linspace(0, 1, len(top) + 1)[:-1].numpy())
    for box, colour in enumerate(colours):
        ax.add_patch(
            Rectangle(
                (left[box].item(), top[box].item()),
                (right[box] - left[box]).item(),
                (bottom[box] - top[box]).item(),
                fill=False,
                edgecolor=colour,
                linewidth=1.0,
            )
        )
    margin = 0.5  # keeps the edges of the outermost boxes inside the view
    ax.set_xlim(min(-0.5, left.min().item()) - margin, max(width - 0.5, right.max().item()) + margin)
    ax.set_ylim(max(height - 0.5, bottom.max().item()) + margin, min(-0.5, top.min().item()) - margin)
    return ax.figure


def _grey_background(image: Tensor | None, layer: BoxConv2d) -> Tensor:
    """`(H, W)` float picture under the boxes: the image's channel mean, or zeros of the layer's max input size."""
    if image is None:
        return torch.zeros(layer.max_input_h, layer.max_input_w)
    if image.ndim not in (2, 3):
        raise ValueError(f"draw_boxes: image of shape {tuple(image.shape)} must be (C, H, W) or (H, W)")
    image = image.detach().float().cpu()
    return image.mean(0) if image.ndim == 3 else image
