"""The single-box-convolution MNIST network of Burkov & Lempitsky, "Deep Neural Networks
with Box Convolutions" (NeurIPS 2018), as in the authors' `examples/mnist.py`."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from layers.box import BoxConv2d


class BoxMNIST(nn.Module):
    """One box convolution, a 1x1 convolution, max-pooling, ReLU and a linear classifier:
    `(B, C, H, W) -> (B, K)`.

    Every input channel is averaged over `num_boxes` learned boxes (the paper's
    "generalised Haar filters"), the `C * num_boxes` responses are mixed by a 1x1
    convolution, max-pooled over `pool_size x pool_size` windows and classified. As in
    the reference, there is no normalisation layer.

    Args:
        in_channels: input channels `C`.
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs; also the largest size the boxes may reach.
        num_boxes: boxes per input channel.
        pool_size: window and stride of the max-pooling.
        reparametrization_factor: how fast the boxes move (see `BoxConv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        num_boxes: int = 40,
        pool_size: int = 4,
        reparametrization_factor: float = 8.0,
    ) -> None:
        super().__init__()
        if len(input_size) != 2:
            raise ValueError(f"box_mnist: input_size={list(input_size)} must be [height, width]")
        height, width = input_size
        if not 1 <= pool_size <= min(height, width):
            raise ValueError(f"box_mnist: pool_size={pool_size} must be in [1, {min(height, width)}] for input_size={list(input_size)}")
        channels = in_channels * num_boxes
        self.box = BoxConv2d(in_channels, num_boxes, height, width, reparametrization_factor=reparametrization_factor)
        self.mix = nn.Conv2d(channels, channels, kernel_size=1)
        self.pool = nn.MaxPool2d(pool_size)
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(channels * (height // pool_size) * (width // pool_size), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.pool(self.mix(self.box(x))))
        return self.classifier(x.flatten(1))
