"""Node-wise update (the paper's NMU): scalars and vectors exchange information per atom."""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.models.blocks.activation import mlp


class NodeUpdateBlock(nn.Module):
    """[U v, V v] = W_u v;  [a, b, gamma] = MLP_u([x, ||V v||]);
    x <- x + b / sqrt(2) + x * tanh(gamma);  v <- v + a * U v.
    """

    def __init__(self, hidden_channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.vec_proj = nn.Linear(hidden_channels, 2 * hidden_channels, bias=False)
        self.scalar_mlp = mlp([2 * hidden_channels, hidden_channels, 3 * hidden_channels], final_activation=False)
        self.inv_sqrt_2 = 1.0 / math.sqrt(2.0)
        self.eps = eps

    def forward(self, x: torch.Tensor, v: torch.Tensor, update_vectors: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F]. With ``update_vectors=False`` v is returned unchanged (last layer)."""
        f = self.hidden_channels
        uv, vv = torch.split(self.vec_proj(v), f, dim=-1)  # [N, 3, F] each
        vv_norm = torch.sqrt(torch.sum(vv * vv, dim=1) + self.eps)  # [N, F]
        a, b, gamma = torch.split(self.scalar_mlp(torch.cat([x, vv_norm], dim=-1)), f, dim=-1)  # [N, F] each
        x = x + b * self.inv_sqrt_2 + x * torch.tanh(gamma)  # [N, F]
        if update_vectors:
            v = v + a.unsqueeze(1) * uv  # [N, 3, F]
        return x, v
