"""Equivariant message passing from neighbours j to atom i."""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.models.blocks.activation import mlp
from leignn_plugin.models.scatter import segment_sum


class MessageBlock(nn.Module):
    """[a, b, c]_ij = MLP_m(x_j) * W_r(e_ij) / sqrt(3).

    dv_i = sum_j (a_ij v_j + b_ij n_ij) / sqrt(F);  dx_i = sum_j c_ij;
    x_i <- (x_i + dx_i) / sqrt(2);  v_i <- v_i + dv_i.
    """

    def __init__(self, hidden_channels: int, num_rbf: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.node_mlp = mlp([hidden_channels, hidden_channels // 2, 3 * hidden_channels], final_activation=False)
        self.radial = nn.Linear(num_rbf, 3 * hidden_channels)
        self.inv_sqrt_3 = 1.0 / math.sqrt(3.0)
        self.inv_sqrt_f = 1.0 / math.sqrt(hidden_channels)
        self.inv_sqrt_2 = 1.0 / math.sqrt(2.0)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        rbf: torch.Tensor,
        envelope: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], rbf [E, R], envelope [E], unit_vec [E, 3] (from j to i)."""
        j, i = edge_index[0], edge_index[1]
        num_nodes, f = x.shape
        node_part = self.node_mlp(x)  # [N, 3F]
        filt = self.radial(rbf) * (envelope * self.inv_sqrt_3).unsqueeze(-1)  # [E, 3F]
        msg = node_part[j] * filt  # [E, 3F]
        a, b, c = torch.split(msg, f, dim=-1)  # [E, F] each

        dx = segment_sum(c, i, num_nodes)  # [N, F]
        vec_msg = a.unsqueeze(1) * v[j] + b.unsqueeze(1) * unit_vec.unsqueeze(-1)  # [E, 3, F]
        dv = segment_sum(vec_msg, i, num_nodes) * self.inv_sqrt_f  # [N, 3, F]
        return (x + dx) * self.inv_sqrt_2, v + dv
