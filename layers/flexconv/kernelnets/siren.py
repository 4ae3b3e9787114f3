"""SIREN kernel network (Sitzmann et al., NeurIPS 2020), as used by CKConv
(Romero et al., ICLR 2022, arXiv:2102.02611)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from layers.flexconv.kernelnets.base import KernelNet, check_layers


class SIREN(KernelNet):
    """`(P, D) -> (out_channels, P)`: `num_layers` linears, all but the last followed by
    `sin(omega_0 * (W x + b))`.

    Initialisation as in the CKConv reference: the first linear uniform in `±1/D`, every
    later one (the output included) uniform in `±sqrt(6 / fan_in) / omega_0`, biases at
    PyTorch's default. `omega_0` sets the frequencies the kernel can express (the CKConv
    paper used 25-45: 31.1 for sMNIST, 43.5 for pMNIST, 25.7 for sCIFAR10).

    Args:
        dim, out_channels: see `KernelNet`.
        init_extent: accepted for the common interface; SIREN units are global.
        hidden_channels: units per hidden layer.
        num_layers: linears in total (>= 2).
        omega_0: frequency scale.
        learn_omega_0: make `omega_0` a parameter.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        init_extent: float = 1.0,
        hidden_channels: int = 32,
        num_layers: int = 3,
        omega_0: float = 30.0,
        learn_omega_0: bool = False,
    ) -> None:
        super().__init__(dim, out_channels, hidden_channels)
        check_layers("SIREN", num_layers, 2)
        if omega_0 <= 0:
            raise ValueError(f"SIREN: omega_0={omega_0} must be > 0")
        widths = [dim] + [hidden_channels] * (num_layers - 1)
        self.hidden = nn.ModuleList(nn.Linear(fan_in, hidden_channels) for fan_in in widths)
        omega = torch.tensor(float(omega_0))
        if learn_omega_0:
            self.omega_0 = nn.Parameter(omega)
        else:
            self.register_buffer("omega_0", omega)
        with torch.no_grad():
            nn.init.uniform_(self.hidden[0].weight, -1 / dim, 1 / dim)
            for linear in [*self.hidden[1:], self.output]:
                bound = math.sqrt(6 / linear.in_features) / omega_0
                nn.init.uniform_(linear.weight, -bound, bound)

    def features(self, positions: Tensor) -> Tensor:
        out = positions
        for linear in self.hidden:
            out = torch.sin(self.omega_0 * linear(out))
        return out
