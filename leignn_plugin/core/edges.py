"""The edge inputs every message block of one forward pass reads, and the step that prepares them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EdgeSet:
    """edge_index [2, E] (source j, target i), unit vectors [E, 3] from j to i, radial features [E, R + 1]."""

    edge_index: torch.Tensor
    unit_vec: torch.Tensor
    radial: torch.Tensor


class EdgeLayout(nn.Module):
    """Packs a pass's edges for the message blocks: here as they are, in the graph's order.

    It holds no parameters; speed paths (``leignn_plugin.accel``) swap in a layout that reorders
    the edges or adds scratch memory, together with message blocks that read it.
    """

    def forward(self, edge_index: torch.Tensor, unit_vec: torch.Tensor, radial: torch.Tensor) -> EdgeSet:
        return EdgeSet(edge_index=edge_index, unit_vec=unit_vec, radial=radial)
