"""Which input pixels survive repeated subsampling: traditional vs checkered samplers.

Sadigh & Sen, arXiv 1805.10766, Figure 1: a stride-2 layer keeps one pixel of every 2x2
window; checkered subsampling keeps two, in two submaps, so after `n` steps `2**n` times as
many input pixels still reach the feature maps, spread over the image by the sampler.

    python -m layers.checkered.visualize --size 64 --steps 3 --out checkered_sampling.png

Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from layers.checkered.checkered_conv import CheckeredConv2d

METHODS = ("traditional", "naive", "lattice", "random")


def survivors(size: int, steps: int, method: str, seed: int = 0) -> Tensor:
    """`(size, size)` int map: 0 where an input pixel is subsampled away after `steps` stride-2
    steps, else 1 + the index of the (first) submap that still holds it."""
    if size < 1 or steps < 0:
        raise ValueError(f"survivors: size={size} must be >= 1 and steps={steps} >= 0")
    if method not in METHODS:
        raise ValueError(f"survivors: method={method!r} is not one of {list(METHODS)}")
    # Every pixel carries its own 1-based index through identity 1x1 layers; 0 is padding.
    pixels = torch.arange(1, size * size + 1, dtype=torch.float64).view(1, 1, size, size)
    if method == "traditional":
        kept = pixels[..., :: 2**steps, :: 2**steps].unsqueeze(2)
    else:
        kept = pixels
        for step in range(steps):
            layer = CheckeredConv2d(1, 1, 1, stride=2, bias=False, sampler=method, seed=seed + step).double().eval()
            layer.weight.data.fill_(1.0)
            with torch.no_grad():
                kept = layer(kept)
    result = torch.zeros(size * size, dtype=torch.long)
    for submap in reversed(range(kept.shape[2])):
        index = kept[0, 0, submap].flatten().long()
        index = index[index > 0] - 1
        result[index] = submap + 1
    return result.view(size, size)


def draw_survivors(size: int, steps: int, seed: int = 0):
    """One panel per method; the surviving pixels coloured by submap. Returns the Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    import matplotlib

    figure = Figure(figsize=(4 * len(METHODS), 4.4))
    FigureCanvasAgg(figure)
    submaps = 2**steps
    colours = matplotlib.colormaps["turbo"](torch.linspace(0, 1, submaps).numpy())
    colour_map = ListedColormap([(1.0, 1.0, 1.0, 1.0), *colours])
    for index, method in enumerate(METHODS):
        ax = figure.add_subplot(1, len(METHODS), index + 1)
        kept = survivors(size, steps, method, seed)
        ax.imshow(kept.numpy(), cmap=colour_map, vmin=0, vmax=submaps, interpolation="nearest")
        ax.set_title(f"{method}: {int((kept > 0).sum())} of {size * size} pixels")
        ax.set_xticks([]), ax.set_yticks([])
    figure.suptitle(f"input pixels kept after {steps} stride-2 steps (colour: submap)")
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--steps", type=int, default=3, help="stride-2 subsampling steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sampler")
    parser.add_argument("--out", type=Path, default=Path("checkered_sampling.png"), help="PNG file to write")
    args = parser.parse_args(argv)
    if args.size < 1 or not 0 <= args.steps <= 9:
        parser.error(f"--size={args.size} must be >= 1 and --steps={args.steps} in 0..9 (the lattice is defined up to 9 steps)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_survivors(args.size, args.steps, args.seed).savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
