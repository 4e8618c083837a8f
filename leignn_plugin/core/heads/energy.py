"""Energy head: E_G = sum_{i in G} MLP_E(x_i)."""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.core.activation import mlp, reset_linear_layers
from leignn_plugin.core.scatter import segment_sum


class EnergyHead(nn.Module):
    """Per-atom energies from node scalars, summed per structure (extensive by construction).

    The output layer starts at zero, so an untrained model predicts the normaliser's mean energy
    instead of a random offset of order sqrt(atoms) that the optimiser would first have to remove.
    """

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.mlp = mlp([hidden_channels, hidden_channels // 2, 1], final_activation=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_linear_layers(self.mlp)
        nn.init.zeros_(self.mlp[-1].weight)

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int, out_dtype: torch.dtype) -> torch.Tensor:
        """x [N, F] -> energies [B] in ``out_dtype`` (float32 under AMP, float64 in float64 runs)."""
        per_atom = self.mlp(x.to(self.mlp[0].weight.dtype))  # [N, 1]
        return segment_sum(per_atom.squeeze(-1).to(out_dtype), batch, num_graphs)  # [B]
