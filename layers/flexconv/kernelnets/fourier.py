"""Fourier net: the multiplicative filter network of sines (Fathony et al., ICLR 2021)."""

from __future__ import annotations

import math

from layers.flexconv.kernelnets.mfn import MultiplicativeFilterNet, SineFilter


class FourierNet(MultiplicativeFilterNet):
    """`(P, D) -> (out_channels, P)` from `num_layers + 1` sine filters `sin(W x + b)`.

    Global units: `init_extent` is accepted for the common interface and does not apply.
    Other arguments as for `MAGNet`.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        init_extent: float = 1.0,
        hidden_channels: int = 32,
        num_layers: int = 3,
        input_scale: float = 25.6,
        weight_scale: float = 1.0,
    ) -> None:
        filter_scale = input_scale / math.sqrt(num_layers + 1)
        filters = [SineFilter(dim, hidden_channels, filter_scale) for _ in range(num_layers + 1)]
        super().__init__(dim, out_channels, hidden_channels, filters, weight_scale)
