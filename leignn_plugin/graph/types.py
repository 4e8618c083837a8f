"""The result of a neighbour search, and how errors name the structures of a batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# structure index within the batch -> how the user knows it ("run.xyz: frame 3", "sid 12, fid 0")
StructureNames = Callable[[int], str]


def numbered(index: int) -> str:
    """The default name of a structure: its position in the batch."""
    return f"structure {index}"


@dataclass
class NeighborGraph:
    """edge_index [2, E] as (source j, target i) and integer lattice offsets [E, 3] of j's image:
    the edge vector is r_ij = pos_i - (pos_j + cell_offsets @ cell)."""

    edge_index: torch.Tensor
    cell_offsets: torch.Tensor

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]
