"""Gabor net: the multiplicative filter network of Fathony et al. (ICLR 2021) with isotropic
Gabor filters, the ablation baseline of MAGNet (Romero et al., arXiv:2110.08059, Table 5)."""

from __future__ import annotations

from layers.flexconv.kernelnets.magnet import MAGNet


class GaborNet(MAGNet):
    """`(P, D) -> (out_channels, P)` from `num_layers + 1` isotropic Gabor filters.

    As in the reference implementation, every filter draws its envelope width from the same
    `Gamma(alpha / (num_layers + 1), beta)` (MAGNet instead widens them layer by layer).
    Arguments as for `MAGNet`.
    """

    anisotropic = False

    @staticmethod
    def envelope_alpha(alpha: float, layer: int, num_layers: int) -> float:
        return alpha / (num_layers + 1)
