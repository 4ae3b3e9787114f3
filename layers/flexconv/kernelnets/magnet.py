"""MAGNet: Multiplicative Anisotropic Gabor Network, the kernel network of FlexConv
(Romero et al., ICLR 2022, arXiv:2110.08059, Sec. 3.2)."""

from __future__ import annotations

import math

from layers.flexconv.kernelnets.mfn import GaborFilter, MultiplicativeFilterNet


class MAGNet(MultiplicativeFilterNet):
    """`(P, D) -> (out_channels, P)` from `num_layers + 1` anisotropic Gabor filters.

    The published initialisation: filter `l` (from 0) draws its envelope widths from
    `Gamma(alpha / (l + 1), beta)`, so later filters start wider and lower in frequency;
    every filter's input scale is `input_scale / sqrt(num_layers + 1)`, so the product of
    all filters spans about `input_scale` in frequency; envelope centres are uniform in
    `±init_extent`.

    Args:
        dim: position dimensions `D`.
        out_channels: kernel values per position (`C_out * C_in`).
        hidden_channels: units per filter.
        num_layers: hidden linears (filters: one more).
        input_scale: frequency scale of the sines (25.6 in the paper's experiments).
        alpha, beta: Gamma distribution of the envelope widths.
        weight_scale: hidden linears start uniform in `±sqrt(weight_scale / hidden_channels)`.
        init_extent: half-width of the region the envelope centres start in.
    """

    anisotropic = True  # one envelope width per position dimension

    def __init__(
        self,
        dim: int,
        out_channels: int,
        init_extent: float = 1.0,
        hidden_channels: int = 32,
        num_layers: int = 3,
        input_scale: float = 25.6,
        alpha: float = 6.0,
        beta: float = 1.0,
        weight_scale: float = 1.0,
    ) -> None:
        filter_scale = input_scale / math.sqrt(num_layers + 1)
        filters = [
            GaborFilter(dim, hidden_channels, filter_scale, self.envelope_alpha(alpha, layer, num_layers), beta, init_extent, self.anisotropic)
            for layer in range(num_layers + 1)
        ]
        super().__init__(dim, out_channels, hidden_channels, filters, weight_scale)

    @staticmethod
    def envelope_alpha(alpha: float, layer: int, num_layers: int) -> float:
        """Gamma shape of filter `layer`'s envelope widths: wider filters deeper in the net."""
        return alpha / (layer + 1)
