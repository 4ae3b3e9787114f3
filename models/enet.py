"""ENet (Paszke et al. 2016, arXiv:1606.02147) and its box-convolution variants (Burkov &
Lempitsky, "Deep Neural Networks with Box Convolutions", NeurIPS 2018).

All four share ENet's layout: an initial block (stride 2), a downsampling bottleneck and
stage 1 at 64 channels (stride 4), a downsampling bottleneck and stages 2-3 at 128
channels (stride 8), then a max-unpooling decoder (stage 4 at 64 channels, stage 5 at 16)
and a 2x2/2 transposed convolution to the class logits. The variants differ only in the
blocks of the five stages, block by block as in the authors' code:

- `ENet`: regular, dilated (2, 4, 8, 16) and asymmetric (5x1 + 1x5) bottlenecks;
- `BoxENet`: box blocks in place of stage 1's 2nd and 4th blocks, of every dilated block,
  of stage 4's 2nd block and of stage 5's block (with 2 boxes);
- `BoxOnlyENet`: box blocks everywhere except the down- and upsampling bottlenecks;
- `ENetMinus`: BoxENet without its box blocks (the ablation of the paper).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from models.box_blocks import BoxBottleneck, check_input, feature_map_sizes, scale_dropout_
from models.enet_blocks import Bottleneck, DownsamplingBottleneck, InitialBlock, UpsamplingBottleneck


class _ENetLayout(nn.Module):
    """`(B, C, H, W) -> (B, K, H, W)` through ENet's initial block, bottlenecks and head,
    with the blocks of stages 1-5 given by the subclass."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        num_classes: int,
        stages: Sequence[Sequence[nn.Module]],
        down_dropouts: tuple[float, float],
        dropout_scale: float,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes={num_classes} must be >= 1")
        if not 0 < in_channels < 16:
            raise ValueError(f"{name}: in_channels={in_channels} must be in [1, 15] (the initial block outputs 16)")
        self.net_name = name
        self.initial = InitialBlock(in_channels, 16)
        self.down1 = DownsamplingBottleneck(16, 64, down_dropouts[0])
        self.stage1 = nn.Sequential(*stages[0])
        self.down2 = DownsamplingBottleneck(64, 128, down_dropouts[1])
        self.stage2 = nn.Sequential(*stages[1])
        self.stage3 = nn.Sequential(*stages[2])
        self.up4 = UpsamplingBottleneck(128, 64)
        self.stage4 = nn.Sequential(*stages[3])
        self.up5 = UpsamplingBottleneck(64, 16)
        self.stage5 = nn.Sequential(*stages[4])
        self.head = nn.ConvTranspose2d(16, num_classes, 2, stride=2)
        scale_dropout_(self, dropout_scale, name)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.net_name)
        x = self.initial(x)
        x, indices1 = self.down1(x)
        x = self.stage1(x)
        x, indices2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, indices2))
        x = self.stage5(self.up5(x, indices1))
        return self.head(x)


def _dilated_stage(dropout: float) -> list[nn.Module]:
    """ENet's stage 2/3 (without the downsampling block): 8 blocks at 128 channels."""
    return [
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, dilation=2),
        Bottleneck(128, dropout, asymmetric=True),
        Bottleneck(128, dropout, dilation=4),
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, dilation=8),
        Bottleneck(128, dropout, asymmetric=True),
        Bottleneck(128, dropout, dilation=16),
    ]


def _regular_asymmetric_stage(dropout: float) -> list[nn.Module]:
    """ENet's stage 2/3 without its dilated blocks (ENetMinus)."""
    return [
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, asymmetric=True),
        Bottleneck(128, dropout),
        Bottleneck(128, dropout, asymmetric=True),
    ]


class ENet(_ENetLayout):
    """ENet as published: `(B, C, H, W) -> (B, K, H, W)`, `H` and `W` multiples of 8.

    Args:
        in_channels: input channels `C` (at most 15: the initial block concatenates them
            with `16 - C` convolution outputs).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs (checked; ENet itself works at any multiple of 8).
        dropout_scale: multiplies every dropout rate (0.01 in stage 1, 0.1 later; 0 disables).
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: Sequence[int] = (512, 1024), dropout_scale: float = 1.0) -> None:
        feature_map_sizes(input_size, "enet")
        stages = [
            [Bottleneck(64, 0.01) for _ in range(4)],
            _dilated_stage(0.1),
            _dilated_stage(0.1),
            [Bottleneck(64, 0.1), Bottleneck(64, 0.1)],
            [Bottleneck(16, 0.1)],
        ]
        super().__init__("enet", in_channels, num_classes, stages, (0.01, 0.1), dropout_scale)


class BoxENet(_ENetLayout):
    """ENet with box blocks in place of its dilated blocks and of a few regular ones.

    Args:
        in_channels: input channels `C` (at most 15).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs; the box layers of a stage at stride `s` get
            `max_input = (H / s, W / s)`.
        dropout_scale: multiplies every dropout rate (0 disables dropout).
        reparametrization_factor: of every box layer (0.86 in the authors' code).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int] = (512, 1024),
        dropout_scale: float = 1.0,
        reparametrization_factor: float = 0.86,
    ) -> None:
        sizes = feature_map_sizes(input_size, "boxenet")

        def box(channels: int, stride: int, dropout: float, num_boxes: int = 4) -> BoxBottleneck:
            return BoxBottleneck(channels, num_boxes, sizes[stride], dropout, reparametrization_factor)

        def box_stage() -> list[nn.Module]:
            return [
                Bottleneck(128, 0.1),
                box(128, 8, 0.25),
                Bottleneck(128, 0.1, asymmetric=True),
                box(128, 8, 0.25),
                Bottleneck(128, 0.1),
                box(128, 8, 0.25),
                Bottleneck(128, 0.1, asymmetric=True),
                box(128, 8, 0.25),
            ]

        stages = [
            [Bottleneck(64, 0.01), box(64, 4, 0.15), Bottleneck(64, 0.01), box(64, 4, 0.15)],
            box_stage(),
            box_stage(),
            [Bottleneck(64, 0.1), box(64, 4, 0.1)],
            [box(16, 2, 0.1, num_boxes=2)],
        ]
        super().__init__("boxenet", in_channels, num_classes, stages, (0.01, 0.1), dropout_scale)


class BoxOnlyENet(_ENetLayout):
    """ENet with every block but the down- and upsampling bottlenecks a box block.

    Args:
        in_channels: input channels `C` (at most 15).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs; sizes the box layers as in `BoxENet`.
        dropout_scale: multiplies every dropout rate (0 disables dropout).
        reparametrization_factor: of every box layer (0.51 in the authors' code).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int] = (512, 1024),
        dropout_scale: float = 1.0,
        reparametrization_factor: float = 0.51,
    ) -> None:
        sizes = feature_map_sizes(input_size, "boxonlyenet")

        def boxes(count: int, channels: int, stride: int, dropout: float) -> list[nn.Module]:
            return [BoxBottleneck(channels, 4, sizes[stride], dropout, reparametrization_factor) for _ in range(count)]

        stages = [boxes(4, 64, 4, 0.15), boxes(8, 128, 8, 0.4), boxes(8, 128, 8, 0.4), boxes(2, 64, 4, 0.15), boxes(1, 16, 2, 0.05)]
        # The authors' code uses 0.01 (not ENet's 0.1) in the second downsampling block.
        super().__init__("boxonlyenet", in_channels, num_classes, stages, (0.01, 0.01), dropout_scale)


class ENetMinus(_ENetLayout):
    """BoxENet with its box blocks removed: 2 blocks in stage 1, 4 regular/asymmetric
    blocks in stages 2 and 3, 1 in stage 4 and none in stage 5.

    Args:
        in_channels: input channels `C` (at most 15).
        num_classes: classes `K`.
        input_size: `[H, W]` of the inputs (checked).
        dropout_scale: multiplies every dropout rate (0 disables dropout).
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: Sequence[int] = (512, 1024), dropout_scale: float = 1.0) -> None:
        feature_map_sizes(input_size, "enet_minus")
        stages = [
            [Bottleneck(64, 0.01), Bottleneck(64, 0.01)],
            _regular_asymmetric_stage(0.1),
            _regular_asymmetric_stage(0.1),
            [Bottleneck(64, 0.1)],
            [],
        ]
        super().__init__("enet_minus", in_channels, num_classes, stages, (0.01, 0.1), dropout_scale)
