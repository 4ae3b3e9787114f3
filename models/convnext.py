"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022, arXiv 2201.03545), and its
DCLS version (Khalfaoui-Hassani et al., ICLR 2023, arXiv 2112.03740, Sec. 5): the depthwise
convolutions become `Dcls2d` through the `conv` factory, with the positions shared by all
blocks of a stage (`share_positions`).

The stem (a 4x4 patchify convolution) and the 2x2 downsampling layers are patch embeddings,
not spatial filters, so they stay `nn.Conv2d` whatever the `conv` family.

`repulsion_factor` adds the DCLS ConvNeXt code's repulsion loss in its form: the repulsion
term of every distinct position tensor, averaged over them and squared (the layers' own
`repulsion_factor` adds the terms linearly instead). The code adds it from epoch 21 on,
which `callbacks=dcls_repulsion` (`engine.dcls_repulsion.RepulsionFrom`) switches.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from layers.dcls.dcls_layer import repulsion
from layers.factory import ConvFactory, standard_conv

SHARED_PARAMETERS = ("P", "SIG")  # what `share_positions` ties across the blocks of a stage


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of `(B, C, H, W)`."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """`(B, C, H, W) -> (B, C, H, W)`: depthwise k x k convolution, LayerNorm, MLP (x4),
    layer scale, stochastic depth, residual."""

    def __init__(self, dim: int, conv: ConvFactory, kernel_size: int, drop_path: float, layer_scale_init: float) -> None:
        super().__init__()
        self.dwconv = conv(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    """ConvNeXt classifier: `(B, in_channels, H, W) -> (B, num_classes)`.

    Args:
        depths, dims: blocks and channels per stage (T: [3,3,9,3], [96,192,384,768]).
        kernel_size: of the depthwise convolutions, as the `conv` factory is asked for it.
        stem_patch: side of the patchify stem (4 for ImageNet; 1 or 2 for 32x32 inputs).
        share_positions: tie the `P`/`SIG` parameters of the depthwise layers of each
            stage to those of its first block (the DCLS paper's ConvNeXt), whose repulsion
            term (if any) is then the stage's only one; no effect on layers without them.
        repulsion_factor: weight of `mean(repulsion(P))**2` over the distinct position
            tensors `P` of the depthwise layers (0: off; no term without positions, e.g. the
            plain baseline, as in the reference); exclusive with the layers' own
            `repulsion_factor`. `repulsion_enabled` (set by a callback) switches it.
        conv: factory of the depthwise convolutions.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        kernel_size: int = 7,
        stem_patch: int = 4,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
        head_init_scale: float = 1.0,
        share_positions: bool = False,
        repulsion_factor: float = 0.0,
        conv: ConvFactory = standard_conv,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims) or not depths:
            raise ValueError(f"ConvNeXt: depths={list(depths)} and dims={list(dims)} must be non-empty and equally long")
        if stem_patch < 1:
            raise ValueError(f"ConvNeXt: stem_patch={stem_patch} must be >= 1")
        if not repulsion_factor >= 0:
            raise ValueError(f"net.repulsion_factor={repulsion_factor} must be >= 0")
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, dims[0], stem_patch, stride=stem_patch), LayerNorm2d(dims[0], eps=1e-6))])
        for previous, dim in zip(dims[:-1], dims[1:]):
            self.downsample.append(nn.Sequential(LayerNorm2d(previous, eps=1e-6), nn.Conv2d(previous, dim, 2, stride=2)))
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for stage, (depth, dim) in enumerate(zip(depths, dims)):
            first = sum(depths[:stage])
            blocks = [ConvNeXtBlock(dim, conv, kernel_size, rates[first + i], layer_scale_init) for i in range(depth)]
            if share_positions:
                for block in blocks[1:]:
                    for name in SHARED_PARAMETERS:
                        if isinstance(getattr(block.dwconv, name, None), nn.Parameter):
                            setattr(block.dwconv, name, getattr(blocks[0].dwconv, name))
                    if getattr(block.dwconv, "repulsion_factor", 0):  # the shared positions are repelled once
                        block.dwconv.repulsion_factor = 0.0
            self.stages.append(nn.Sequential(*blocks))
        if repulsion_factor and any(getattr(block.dwconv, "repulsion_factor", 0) for stage in self.stages for block in stage):
            raise ValueError("net.repulsion_factor and net.conv.repulsion_factor are exclusive: set one form of the repulsion loss")
        self.repulsion_factor = repulsion_factor
        self.repulsion_enabled = True
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Plain convolutions and linear layers only: other families keep their own init.
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def positions(self) -> list[nn.Parameter]:
        """The distinct position tensors `P` of the depthwise layers (one per stage when shared)."""
        found = (getattr(block.dwconv, "P", None) for stage in self.stages for block in stage)
        return list({id(p): p for p in found if isinstance(p, nn.Parameter)}.values())

    def auxiliary_loss(self) -> Tensor | None:
        """`repulsion_factor * mean(repulsion(P))**2` over the distinct position tensors, or
        None when off (`layers.factory.AuxiliaryLoss`)."""
        positions = self.positions()
        if not (self.repulsion_factor and self.repulsion_enabled and positions):
            return None
        return self.repulsion_factor * torch.stack([repulsion(p) for p in positions]).mean() ** 2

    def forward(self, x: Tensor) -> Tensor:
        for downsample, stage in zip(self.downsample, self.stages):
            x = stage(downsample(x))
        return self.head(self.norm(x.mean((-2, -1))))
