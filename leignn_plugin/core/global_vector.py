"""Vector exchange between atoms and the per-structure virtual vector g_G.

Channel mixing without bias keeps these maps rotation-equivariant.
"""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.core.parallel import AtomShare
from leignn_plugin.core.scatter import segment_mean


class GlobalVectorToLocal(nn.Module):
    """v_i <- v_i + W_a (v_i + g_G)."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.mix = nn.Linear(hidden_channels, hidden_channels, bias=False)

    def forward(self, v: torch.Tensor, g: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return v + self.mix(v + g[batch])  # [N, 3, F]


class LocalVectorToGlobal(nn.Module):
    """g_G <- g_G + W_b (mean_{i in G} v_i + g_G); under graph parallelism the mean spans every rank."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.mix = nn.Linear(hidden_channels, hidden_channels, bias=False)

    def forward(self, v: torch.Tensor, g: torch.Tensor, batch: torch.Tensor, share: AtomShare | None = None
                ) -> torch.Tensor:
        v_mean = segment_mean(v, batch, g.shape[0]) if share is None else share.structure_mean(v, batch)  # [B, 3, F]
        return g + self.mix(v_mean + g)  # [B, 3, F]
