"""Scalar exchange between atoms and the per-structure virtual node u_G."""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.core.activation import mlp
from leignn_plugin.core.parallel import AtomShare
from leignn_plugin.core.scatter import segment_mean


class GlobalScalarToLocal(nn.Module):
    """x_i <- x_i + MLP_s([x_i, u_G]): each atom reads its structure's global scalar."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.mlp = mlp([2 * hidden_channels, hidden_channels, hidden_channels], final_activation=True)

    def forward(self, x: torch.Tensor, u: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(torch.cat([x, u[batch]], dim=-1))  # [N, F]


class LocalScalarToGlobal(nn.Module):
    """u_G <- u_G + MLP_g([mean_{i in G} x_i, u_G]): the virtual node reads its atoms.

    Under graph parallelism (``share``) the mean runs over every rank's atoms of G.
    """

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.mlp = mlp([2 * hidden_channels, hidden_channels, hidden_channels], final_activation=True)

    def forward(self, x: torch.Tensor, u: torch.Tensor, batch: torch.Tensor, share: AtomShare | None = None
                ) -> torch.Tensor:
        x_mean = segment_mean(x, batch, u.shape[0]) if share is None else share.structure_mean(x, batch)  # [B, F]
        return u + self.mlp(torch.cat([x_mean, u], dim=-1))  # [B, F]
