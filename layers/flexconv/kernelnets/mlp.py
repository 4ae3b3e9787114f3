"""ReLU MLP kernel network, the first kernel network of CKConv
(Romero et al., ICLR 2022, arXiv:2102.02611, Sec. 4.1)."""

from __future__ import annotations

from torch import Tensor, nn

from layers.flexconv.kernelnets.base import KernelNet, check_layers

NORMS = ("batch", "layer", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    # "batch" normalises each unit over the positions of the grid, as the reference does
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "layer":
        return nn.LayerNorm(channels)
    return nn.Identity()


class MLP(KernelNet):
    """`(P, D) -> (out_channels, P)`: `num_layers` linears with norm and ReLU between them.

    Weights start normal with standard deviation `init_std` and biases at zero (the reference
    initialisation).

    Args:
        dim, out_channels: see `KernelNet`.
        init_extent: accepted for the common interface; MLP units are global.
        hidden_channels: units per hidden layer.
        num_layers: linears in total (>= 2).
        norm: `batch`, `layer` or `none`.
        init_std: standard deviation of the initial weights.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        init_extent: float = 1.0,
        hidden_channels: int = 32,
        num_layers: int = 3,
        norm: str = "batch",
        init_std: float = 0.01,
    ) -> None:
        super().__init__(dim, out_channels, hidden_channels)
        check_layers("MLP", num_layers, 2)
        if norm not in NORMS:
            raise ValueError(f"MLP: norm={norm!r} must be one of {', '.join(NORMS)}")
        layers: list[nn.Module] = []
        for fan_in in [dim] + [hidden_channels] * (num_layers - 2):
            layers += [nn.Linear(fan_in, hidden_channels), _norm(norm, hidden_channels), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        for module in [*self.hidden, self.output]:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, init_std)
                nn.init.zeros_(module.bias)

    def features(self, positions: Tensor) -> Tensor:
        return self.hidden(positions)
