"""`BoxConv2d`: depthwise convolution with learned rectangular averaging filters.

Burkov & Lempitsky, "Deep Neural Networks with Box Convolutions", NeurIPS 2018
(https://papers.nips.cc/paper/7859-deep-neural-networks-with-box-convolutions).
Each input channel is filtered by `num_filters` boxes whose size and offset are learned;
integral images make the cost independent of the box size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from layers.box.functional import IMPLEMENTATIONS, box_conv2d

# Boxes keep a height/width of at least this many pixels (rounding inward needs > 2).
MIN_BOX_SIZE = {True: 1.001, False: 2.001}


def _random_extents(max_size: int, shape: tuple[int, int], generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Random `(min, max)` box edges spread over an image of `max_size` pixels.

    Follows the reference initialisation: centres uniform in the inner 2/2.4 of the
    image, half-sizes uniform between 1 pixel and the distance to that region's border,
    then everything scaled by 1.5.
    """
    min_size = 2.0
    reach = max_size * 2 / 4.8 - 1  # half-width of the region holding the boxes
    centre_bound = max(reach - min_size / 2, 0.0)
    centre = (torch.rand(shape, generator=generator) * 2 - 1) * centre_bound
    room = torch.minimum(reach - centre, centre + reach).clamp(min=min_size / 2)
    half_size = min_size / 2 + torch.rand(shape, generator=generator) * (room - min_size / 2)
    return (centre - half_size) * 1.5, (centre + half_size) * 1.5


class BoxConv2d(nn.Module):
    """Depthwise box convolution: `(B, C, H, W) -> (B, C*F, ceil(H/s), ceil(W/s))`.

    Output channel `c*F + f` is input channel `c` filtered by box `f`: the (normalised)
    sum over rows `[i + x_min, i + x_max + 1)` and columns `[j + y_min, j + y_max + 1)`
    (x = rows, y = columns), zero outside the image, partly covered pixels weighted by
    their coverage. See `layers.box.functional.box_conv2d` for the exact semantics.

    Args:
        in_planes: input channels `C`.
        num_filters: boxes per input channel `F`.
        max_input_h, max_input_w: the largest feature map the layer will see; boxes are
            kept within about `[-(max + 1), max - 1]` pixels of the output pixel.
        reparametrization_factor: coordinates are stored divided by
            `R = max_input * reparametrization_factor`, which scales their gradients
            into the range of the other weights (larger R: boxes move faster).
        stride: output pixel `(i, j)` samples input position `(i*s, j*s)`.
        normalize: average over the box (divide by its full area) instead of summing.
        exact: fractional box edges; `False` rounds boxes inward (fast inference).
        impl: `auto` (compiled kernels when they build, else PyTorch), `reference` or
            `extension`.

    Attributes:
        x_min, x_max, y_min, y_max: `(in_planes, num_filters)` parameters, in pixels / R.
    """

    def __init__(
        self,
        in_planes: int,
        num_filters: int,
        max_input_h: int,
        max_input_w: int,
        reparametrization_factor: float = 8,
        stride: int | tuple[int, int] = 1,
        normalize: bool = True,
        exact: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("in_planes", in_planes), ("num_filters", num_filters), ("max_input_h", max_input_h), ("max_input_w", max_input_w)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BoxConv2d: {name}={value!r} must be a positive int")
        if reparametrization_factor <= 0:
            raise ValueError(f"BoxConv2d: reparametrization_factor={reparametrization_factor} must be > 0")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"BoxConv2d: impl={impl!r} is not one of {IMPLEMENTATIONS}")
        self.in_planes = in_planes
        self.num_filters = num_filters
        self.max_input_h = max_input_h
        self.max_input_w = max_input_w
        self.reparametrization_factor = reparametrization_factor
        self.scale_h = max_input_h * reparametrization_factor
        self.scale_w = max_input_w * reparametrization_factor
        self.stride = stride
        self.normalize = normalize
        self.exact = exact
        self.impl = impl
        self.x_min, self.x_max, self.y_min, self.y_max = (nn.Parameter(torch.empty(in_planes, num_filters)) for _ in range(4))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Spread the boxes over the image (random, from torch's RNG or `generator`)."""
        shape = (self.in_planes, self.num_filters)
        x_min, x_max = _random_extents(self.max_input_h, shape, generator)
        y_min, y_max = _random_extents(self.max_input_w, shape, generator)
        self.set_box_coordinates(x_min, x_max, y_min, y_max)

    @torch.no_grad()
    def set_box_coordinates(self, x_min: Tensor, x_max: Tensor, y_min: Tensor, y_max: Tensor) -> None:
        """Set the boxes from pixel coordinates, each `(in_planes, num_filters)`."""
        for parameter, value, scale in zip(self._parameters_hw(), (x_min, x_max, y_min, y_max), self._scales()):
            parameter.copy_(torch.as_tensor(value, dtype=parameter.dtype) / scale)

    def box_coordinates(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`(x_min, x_max, y_min, y_max)` in pixels (differentiable)."""
        return tuple(parameter * scale for parameter, scale in zip(self._parameters_hw(), self._scales()))

    @torch.no_grad()
    def learned_extent(self) -> dict[str, Tensor]:
        """`{"height": (C*F,), "width": (C*F,)}`: each box's size in input pixels, as evaluated
        (`x_max - x_min + 1` rows, `y_max - y_min + 1` columns); `layers.factory.LearnedExtent`."""
        x_min, x_max, y_min, y_max = self.box_coordinates()
        return {"height": (x_max - x_min + 1).flatten(), "width": (y_max - y_min + 1).flatten()}

    def _parameters_hw(self) -> tuple[nn.Parameter, ...]:
        return self.x_min, self.x_max, self.y_min, self.y_max

    def _scales(self) -> tuple[float, ...]:
        return self.scale_h, self.scale_h, self.scale_w, self.scale_w

    @torch.no_grad()
    def clip_(self) -> None:
        """Project the boxes back into the allowed region (in place).

        Edges are clamped to `[-(max + 1), max - 1]` pixels; a box thinner than
        `MIN_BOX_SIZE[exact]` is re-centred at that size.
        """
        min_gap = MIN_BOX_SIZE[self.exact] - 0.9999
        for low, high, scale, max_size in ((self.x_min, self.x_max, self.scale_h, self.max_input_h), (self.y_min, self.y_max, self.scale_w, self.max_input_w)):
            bound_low, bound_high = -(max_size + 1) / scale, (max_size - 1) / scale
            low.clamp_(bound_low, bound_high)
            high.clamp_(bound_low, bound_high)
            gap = min_gap / scale
            too_thin = low + gap > high
            centre = (low + high) / 2
            low.copy_(torch.where(too_thin, centre - gap / 2, low))
            high.copy_(torch.where(too_thin, centre + gap / 2, high))

    def train(self, mode: bool = True) -> "BoxConv2d":
        super().train(mode)
        if not mode:
            self.clip_()
        return self

    def forward(self, input: Tensor) -> Tensor:
        if self.training:
            self.clip_()
        return box_conv2d(input, *self.box_coordinates(), stride=self.stride, normalize=self.normalize, exact=self.exact, impl=self.impl)

    def extra_repr(self) -> str:
        return (
            f"{self.in_planes}, num_filters={self.num_filters}, max_input=({self.max_input_h}, {self.max_input_w}), "
            f"reparametrization_factor={self.reparametrization_factor}, stride={self.stride}, "
            f"normalize={self.normalize}, exact={self.exact}, impl={self.impl!r}"
        )
