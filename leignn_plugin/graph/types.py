"""The result of a neighbour search."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NeighborGraph:
    """edge_index [2, E] as (source j, target i) and integer lattice offsets [E, 3] of j's image:
    the edge vector is r_ij = pos_i - (pos_j + cell_offsets @ cell)."""

    edge_index: torch.Tensor
    cell_offsets: torch.Tensor

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]
