"""The box-convolution bottleneck of Burkov & Lempitsky (NeurIPS 2018), and the input-size
checks of the segmentation nets that use it.

The block replaces the spatial convolutions of ENet and ERFNet blocks: a 1x1 convolution
squeezes `C` channels to `C / n` and a box convolution with `n` boxes per channel expands
them back to `C`, so no 1x1 convolution follows the box convolution. The box layers are
sized from the network input (`max_input_h/w` is the feature-map size at their stage),
which is why the checks of `input_size` live here too.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.box import BoxConv2d

# The segmentation nets downsample three times by 2 (and upsample back).
TOTAL_STRIDE = 8


class BoxBottleneck(nn.Module):
    """`(B, C, H, W) -> (B, C, H, W)`: `ReLU(x + Dropout2d(BN(BoxConv2d(act(BN(Conv1x1(x)))))))`.

    Args:
        channels: input and output channels `C`.
        num_boxes: boxes per squeezed channel `n`; the 1x1 convolution keeps `C / n` channels.
        max_input_size: `(H, W)` of the largest feature map this block will see.
        dropout: channel dropout rate on the residual branch.
        reparametrization_factor: box coordinates are stored divided by this times the
            feature-map size (see `BoxConv2d`).
        inner_relu: a ReLU between the squeeze and the box convolution (BoxENet); BoxERFNet
            has none.
    """

    def __init__(
        self,
        channels: int,
        num_boxes: int,
        max_input_size: tuple[int, int],
        dropout: float = 0.0,
        reparametrization_factor: float = 1.5625,
        inner_relu: bool = True,
    ) -> None:
        super().__init__()
        if num_boxes < 1 or channels % num_boxes != 0:
            raise ValueError(f"BoxBottleneck: channels={channels} must be a multiple of num_boxes={num_boxes}")
        squeezed = channels // num_boxes
        max_h, max_w = max_input_size
        self.residual = nn.Sequential(
            nn.Conv2d(channels, squeezed, 1, bias=False),
            nn.BatchNorm2d(squeezed),
            nn.ReLU(inplace=True) if inner_relu else nn.Identity(),
            BoxConv2d(squeezed, num_boxes, max_h, max_w, reparametrization_factor=reparametrization_factor),
            nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.residual(x))


def feature_map_sizes(input_size: Sequence[int], net: str) -> dict[int, tuple[int, int]]:
    """`{stride: (H / stride, W / stride)}` for strides 2, 4 and 8 of an `[H, W]` input.

    Raises ValueError naming `net` unless `input_size` is two positive ints divisible by 8.
    """
    if len(input_size) != 2:
        raise ValueError(f"{net}: input_size={list(input_size)} must be [height, width]")
    for name, value in zip(("height", "width"), input_size):
        if not isinstance(value, int) or value < TOTAL_STRIDE or value % TOTAL_STRIDE:
            raise ValueError(f"{net}: input {name} {value!r} must be a positive multiple of {TOTAL_STRIDE}")
    height, width = input_size
    return {stride: (height // stride, width // stride) for stride in (2, 4, TOTAL_STRIDE)}


def check_input(x: Tensor, net: str) -> None:
    """Raise ValueError naming `net` unless `x` is `(B, C, H, W)` with `H` and `W` divisible by 8."""
    if x.dim() != 4:
        raise ValueError(f"{net}: expected a (B, C, H, W) input, got shape {tuple(x.shape)}")
    for name, value in zip(("height", "width"), x.shape[-2:]):
        if value % TOTAL_STRIDE:
            raise ValueError(f"{net}: input {name} {value} must be a multiple of {TOTAL_STRIDE}")


def scale_dropout_(net: nn.Module, scale: float, name: str) -> None:
    """Multiply the rate of every `Dropout2d` in `net` by `scale` (in place; 0 disables dropout)."""
    largest = max((module.p for module in net.modules() if isinstance(module, nn.Dropout2d)), default=0.0)
    if scale < 0 or scale * largest > 1:
        raise ValueError(f"{name}: dropout_scale={scale} must be >= 0 and keep every rate <= 1 (largest rate: {largest})")
    for module in net.modules():
        if isinstance(module, nn.Dropout2d):
            module.p *= scale
