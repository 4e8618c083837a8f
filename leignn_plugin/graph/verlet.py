"""A Verlet neighbour list for MD: one search at cutoff + skin, filtered at every step.

The candidate list is rebuilt only when an atom has moved more than half the skin since the last
build (or the cell, periodicity or atoms changed); in between, each step keeps the candidates
within the cutoff and applies the ``max_neighbors`` rule (``search.select_edges``), which gives the
same edges as a fresh search at the cutoff. Offsets refer to the positions as given (unwrapped),
which keeps edges continuous when an atom crosses a cell face.
"""

from __future__ import annotations

import torch

from leignn_plugin.graph.sanity import CloseAtoms
from leignn_plugin.graph.search import check_method, neighbor_graph, select_edges
from leignn_plugin.graph.types import NeighborGraph


class VerletList:
    """Edges of one structure within ``cutoff``, rebuilt lazily with a ``skin`` buffer (Å).

    ``skin=0`` rebuilds at every call: the plain fresh graph. ``method``: the search used for the
    builds (see ``search.py``). ``close_atoms``: refuse atoms closer than its ``min_distance`` at every
    call; the candidates hold every such pair, since a pair closer than ``min_distance`` <= ``cutoff`` now
    was within ``cutoff`` + skin at the build.
    """

    def __init__(self, cutoff: float, skin: float, max_neighbors: int, strict: bool = False,
                 method: str = "vesin", close_atoms: CloseAtoms | None = None) -> None:
        if skin < 0:
            raise ValueError(f"the neighbour-list skin must be >= 0 Å, got {skin}")
        if close_atoms is not None and close_atoms.min_distance > cutoff:
            raise ValueError(f"{close_atoms.setting} ({close_atoms.min_distance:g} Å) must not exceed the "
                             f"cutoff ({cutoff:g} Å)")
        self.close_atoms = close_atoms
        self.method = check_method(method)
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.max_neighbors = int(max_neighbors)
        self.strict = strict
        self.num_builds = 0
        self._candidates: NeighborGraph | None = None
        self._key: tuple | None = None
        self._pos: torch.Tensor | None = None

    def _needs_build(self, pos: torch.Tensor, key: tuple) -> bool:
        if self._candidates is None or self.skin == 0 or key != self._key or self._pos is None:
            return True
        moved = torch.linalg.norm(pos - self._pos, dim=-1).max()  # largest displacement since the build
        return bool(moved > 0.5 * self.skin)

    def edges(self, pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool], numbers: torch.Tensor) -> NeighborGraph:
        """Edges for positions [N, 3] (unwrapped) in ``cell`` [3, 3] with per-axis periodicity ``pbc``."""
        key = (tuple(numbers.tolist()), tuple(bool(p) for p in pbc), tuple(cell.flatten().tolist()))
        pbc_row = torch.tensor([pbc], dtype=torch.bool, device=pos.device)  # [1, 3]
        natoms = torch.tensor([pos.shape[0]], device=pos.device)
        if self._needs_build(pos, key):
            self._candidates = neighbor_graph(pos, cell.unsqueeze(0), pbc_row, natoms, self.cutoff + self.skin,
                                              0, self.strict, self.method, self.close_atoms)
            self._key = key
            self._pos = pos.detach().clone()
            self.num_builds += 1
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        return select_edges(self._candidates.edge_index, self._candidates.cell_offsets, pos, cell.unsqueeze(0),
                            batch, self.cutoff, self.max_neighbors, self.strict, close_atoms=self.close_atoms)
