"""What the core model reads: a batch of structures and its edges, as plain tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leignn_plugin.core.parallel import Collectives


@dataclass
class AtomGraph:
    """B structures with N atoms in all and E directed edges j -> i.

    numbers: [N] atomic numbers. pos: [N, 3] Cartesian positions (Å), in the model's dtype.
    cell: [B, 3, 3] lattice vectors as rows (zeros for molecules). pbc: [B, 3] periodic axes.
    batch: [N] structure of each atom. edge_index: [2, E] (source j, target i).
    cell_offsets: [E, 3] integer lattice offsets of j's image: r_ij = pos_i - (pos_j + offsets @ cell).
    parallel: the ranks sharing this batch's atoms under graph parallelism (``core.parallel``), or None;
    every rank then passes the whole batch and computes its share of the atoms.
    """

    numbers: torch.Tensor
    pos: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    cell_offsets: torch.Tensor
    parallel: Collectives | None = None

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def any_periodic(self) -> bool:
        return bool(self.pbc.any())
