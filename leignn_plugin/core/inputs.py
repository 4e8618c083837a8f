"""What the core model reads: a batch of structures and its edges, as plain tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AtomGraph:
    """B structures with N atoms in all and E directed edges j -> i.

    numbers: [N] atomic numbers. pos: [N, 3] Cartesian positions (Å), in the model's dtype.
    cell: [B, 3, 3] lattice vectors as rows (zeros for molecules). pbc: [B, 3] periodic axes.
    batch: [N] structure of each atom. edge_index: [2, E] (source j, target i).
    cell_offsets: [E, 3] integer lattice offsets of j's image: r_ij = pos_i - (pos_j + offsets @ cell).
    """

    numbers: torch.Tensor
    pos: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    cell_offsets: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def any_periodic(self) -> bool:
        return bool(self.pbc.any())
