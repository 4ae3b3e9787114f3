"""Heat maps of effective receptive fields (matplotlib's Agg backend; no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from layers.receptive_field import EffectiveReceptiveField

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RADIUS_STYLES = {"r50": ("white", "--"), "r90": ("cyan", ":")}


def draw_erf(erf: EffectiveReceptiveField, ax: Axes, title: str) -> None:
    """The `(H, W)` map of `erf` with circles at its 50% and 90% mass radii."""
    from matplotlib.patches import Circle

    if erf.weights.ndim != 2:
        raise ValueError(f"draw_erf: only 2-D receptive fields can be drawn, this one has shape {tuple(erf.weights.shape)}")
    ax.imshow(erf.weights.numpy(), cmap="magma")
    row, col = erf.centre_of_mass().tolist()
    for key, radius in erf.radii().items():
        colour, style = RADIUS_STYLES[key]
        ax.add_patch(Circle((col, row), radius, fill=False, edgecolor=colour, linestyle=style, linewidth=1.2, label=f"{key} = {radius:.1f} px"))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def erf_figure(fields: Sequence[tuple[str, EffectiveReceptiveField]], suptitle: str = "") -> Figure:
    """One heat map per `(title, erf)`, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not fields:
        raise ValueError("erf_figure: no receptive fields to draw")
    figure = Figure(figsize=(3.2 * len(fields), 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(fields), squeeze=False)[0]
    for ax, (title, erf) in zip(axes, fields):
        draw_erf(erf, ax, title)
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    figure.tight_layout()
    return figure


def save_erf_figure(fields: Sequence[tuple[str, EffectiveReceptiveField]], path: Path, suptitle: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    erf_figure(fields, suptitle).savefig(path, dpi=110)
    return path
