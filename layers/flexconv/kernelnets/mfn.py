"""Multiplicative filter networks (Fathony et al., ICLR 2021): the base of MAGNet, Gabor and Fourier nets.

`h_0 = g_0(x)`, `h_l = g_l(x) * (W_l h_{l-1} + b_l)`, output `W_out h_L + b_out`: a product
of filters, so the network is a linear combination of sines (and Gaussian envelopes) whose
frequencies are sums of the filters' frequencies. That is what makes its bandwidth
explicit, and what the anti-aliasing regulariser reads (`filter_frequencies`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from layers.flexconv.kernelnets.base import KernelNet, check_layers


class MultiplicativeFilterNet(KernelNet):
    """`num_layers + 1` filters `(P, D) -> (P, H)` multiplied into `num_layers` hidden linears.

    Args:
        dim, out_channels, hidden_channels: see `KernelNet`.
        filters: the `num_layers + 1` filter modules.
        weight_scale: hidden linears start uniform in `±sqrt(weight_scale / hidden_channels)`.
    """

    def __init__(self, dim: int, out_channels: int, hidden_channels: int, filters: Sequence[nn.Module], weight_scale: float = 1.0) -> None:
        super().__init__(dim, out_channels, hidden_channels)
        check_layers(type(self).__name__, len(filters) - 1, 1)
        self.filters = nn.ModuleList(filters)
        self.hidden = nn.ModuleList(nn.Linear(hidden_channels, hidden_channels) for _ in range(len(filters) - 1))
        bound = math.sqrt(weight_scale / hidden_channels)
        for linear in self.hidden:
            nn.init.uniform_(linear.weight, -bound, bound)

    def features(self, positions: Tensor) -> Tensor:
        out = self.filters[0](positions)
        for filter_, linear in zip(self.filters[1:], self.hidden):
            out = filter_(positions) * linear(out)
        return out

    def filter_frequencies(self, gauss_stddevs: float) -> Tensor:
        """`(num_layers + 1,)`: the highest frequency (cycles per unit of `x`) of each filter."""
        return torch.stack([filter_.max_frequency(gauss_stddevs) for filter_ in self.filters])

    def unit_frequencies(self, gauss_stddevs: float) -> Tensor:
        """`(num_layers + 1, H, D)`: the highest frequency of every unit of every filter, per
        position dimension (cycles per unit of `x`)."""
        return torch.stack([filter_.unit_frequencies(gauss_stddevs).expand(self.hidden_channels, self.dim) for filter_ in self.filters])

    @torch.no_grad()
    def limit_bandwidth(self, budget: float, gauss_stddevs: float) -> None:
        """Scale each filter's frequencies down (never up) so that it stays within an equal share
        of `budget` (cycles per unit): afterwards `filter_frequencies(gauss_stddevs).sum() <= budget`.

        A filter's spectrum scales with its input weights (sine frequencies) and envelope
        precisions together, so both are multiplied by the same factor: the filter keeps its
        shape and is stretched in `x`."""
        share = budget / len(self.filters)
        for filter_ in self.filters:
            frequency = float(filter_.max_frequency(gauss_stddevs))
            if frequency > share:
                filter_.stretch(share / frequency)


class SineFilter(nn.Module):
    """`sin(W x + b)`, `(P, D) -> (P, H)`; `W` starts at the default init times `input_scale`, `b` uniform in `±pi`."""

    def __init__(self, dim: int, hidden_channels: int, input_scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, hidden_channels)
        with torch.no_grad():
            self.linear.weight.mul_(input_scale)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, positions: Tensor) -> Tensor:
        return torch.sin(self.linear(positions))

    def unit_frequencies(self, gauss_stddevs: float) -> Tensor:
        """`(H, D)`: each unit's sine frequency per dimension (cycles per unit of `x`)."""
        return self.linear.weight.abs() / (2 * math.pi)

    def max_frequency(self, gauss_stddevs: float) -> Tensor:
        return self.unit_frequencies(gauss_stddevs).max()

    def stretch(self, factor: float) -> None:
        """Multiply the filter's frequencies by `factor` (the filter becomes `g(factor x)` up to its phase)."""
        self.linear.weight.mul_(factor)


class GaborFilter(nn.Module):
    """`exp(-1/2 sum_d (gamma_hd (x_d - mu_hd))^2) * sin(W x + b)`, `(P, D) -> (P, H)`.

    `gamma ~ Gamma(alpha, beta)` sets the envelope width, `mu ~ U(-init_extent, init_extent)`
    its centre, and the sine frequency starts proportional to it (`W *= input_scale * gamma`),
    so narrow envelopes carry high frequencies.

    Args:
        anisotropic: one `gamma` per unit and dimension (MAGNet); else one per unit (Gabor net).
    """

    def __init__(
        self, dim: int, hidden_channels: int, input_scale: float, alpha: float, beta: float, init_extent: float, anisotropic: bool
    ) -> None:
        super().__init__()
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"GaborFilter: alpha={alpha} and beta={beta} must be > 0")
        self.linear = nn.Linear(dim, hidden_channels)
        self.mu = nn.Parameter(init_extent * (2 * torch.rand(hidden_channels, dim) - 1))
        gamma_shape = (hidden_channels, dim if anisotropic else 1)
        self.gamma = nn.Parameter(torch.distributions.Gamma(float(alpha), float(beta)).sample(gamma_shape))
        with torch.no_grad():
            self.linear.weight.mul_(input_scale * self.gamma)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, positions: Tensor) -> Tensor:
        offsets = positions.unsqueeze(1) - self.mu  # (P, H, D)
        envelope = torch.exp(-0.5 * (self.gamma * offsets).square().sum(-1))
        return envelope * torch.sin(self.linear(positions))

    def unit_frequencies(self, gauss_stddevs: float) -> Tensor:
        """`(H, D)`: each unit's sine frequency plus its envelope's bandwidth (`gauss_stddevs`
        standard deviations of its spectrum, a Gaussian of width `gamma` rad per unit), per
        dimension, in cycles per unit of `x`."""
        sine = self.linear.weight.abs() / (2 * math.pi)
        envelope = self.gamma.abs() * gauss_stddevs / (2 * math.pi)
        return sine + envelope

    def max_frequency(self, gauss_stddevs: float) -> Tensor:
        """`unit_frequencies` maximised over units and dimensions. Each unit's sine is paired
        with its own envelope; the reference adds the largest sine and the largest envelope
        over all units, an upper bound of this."""
        return self.unit_frequencies(gauss_stddevs).max()

    def stretch(self, factor: float) -> None:
        """Multiply the filter's frequencies (sines and envelope precisions) by `factor`: the
        filter becomes `g(factor x)` up to the phases of its sines and centres of its envelopes."""
        self.linear.weight.mul_(factor)
        self.gamma.mul_(factor)
