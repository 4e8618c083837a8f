"""A Verlet neighbour list for MD: fairchem's radius graph at cutoff + skin, filtered every step.

The candidate list is rebuilt only when an atom has moved more than half the skin since the last
build (or the cell, periodicity or atoms changed); in between, each step keeps the candidates
within the cutoff and applies fairchem's ``max_neighbors`` rule, which gives the same edges as a
fresh ``radius_graph_pbc`` at the cutoff. Positions are wrapped into the cell only for the search;
the lattice offsets are converted back so that they refer to the unwrapped MD positions, which
keeps edges continuous when an atom crosses a cell face.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from fairchem.core.common.utils import get_max_neighbors_mask, radius_graph_pbc

from leignn_plugin.models.graph.cell_list import cell_list_graph

MIN_DISTANCE_SQ = 1e-4  # fairchem drops pairs closer than 0.01 Å (an atom with itself)


@dataclass
class Edges:
    """edge_index [2, E] as (source j, target i) and integer lattice offsets [E, 3] of j's image."""

    edge_index: torch.Tensor
    cell_offsets: torch.Tensor


def wrap_shifts(pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool]) -> torch.Tensor:
    """Integer lattice shifts S [N, 3] such that pos - S @ cell lies in the cell along periodic axes."""
    frac = torch.linalg.solve(cell.T, pos.T).T  # [N, 3]
    shifts = torch.floor(frac)  # [N, 3]
    mask = torch.tensor(pbc, dtype=torch.bool, device=pos.device)
    return torch.where(mask, shifts, torch.zeros_like(shifts))


def radius_edges(
    pos: torch.Tensor,
    cell: torch.Tensor,
    pbc: list[bool],
    radius: float,
    max_neighbors: int,
    strict: bool,
    method: str = "fairchem",
) -> Edges:
    """All edges within ``radius`` (``max_neighbors`` <= 0: no cap) for unwrapped positions [N, 3].

    ``method``: ``fairchem`` (its all-pairs ``radius_graph_pbc``) or ``cell_list`` (linear in N).
    """
    shifts = wrap_shifts(pos, cell, pbc)  # [N, 3]
    wrapped = (pos - shifts @ cell).detach().float()  # [N, 3]
    natoms = torch.tensor([pos.shape[0]], device=pos.device)
    cell32 = cell.detach().float().unsqueeze(0)  # [1, 3, 3]
    if method == "cell_list":
        edge_index, offsets, _ = cell_list_graph(wrapped, cell32, natoms, radius, max_neighbors, list(pbc), strict)
    else:
        search = SimpleNamespace(pos=wrapped, cell=cell32, natoms=natoms)
        edge_index, offsets, _ = radius_graph_pbc(search, radius, max_neighbors, strict, pbc=list(pbc))
    j, i = edge_index[0], edge_index[1]
    offsets = offsets.to(shifts.dtype) + shifts[i] - shifts[j]  # [E, 3], refers to unwrapped positions
    return Edges(edge_index=edge_index, cell_offsets=offsets.round())


def filter_edges(
    candidates: Edges, pos: torch.Tensor, cell: torch.Tensor, cutoff: float, max_neighbors: int, strict: bool
) -> Edges:
    """The candidates within ``cutoff`` now, capped at ``max_neighbors`` per atom as fairchem does."""
    j, i = candidates.edge_index[0], candidates.edge_index[1]
    vec = pos[i] - pos[j] - candidates.cell_offsets.to(pos.dtype) @ cell  # [E, 3]
    dist_sq = torch.sum(vec * vec, dim=-1).float()  # [E]
    keep = (dist_sq <= cutoff * cutoff) & (dist_sq > MIN_DISTANCE_SQ)
    edge_index, offsets, dist_sq = candidates.edge_index[:, keep], candidates.cell_offsets[keep], dist_sq[keep]
    natoms = torch.tensor([pos.shape[0]], device=pos.device)
    cap, _ = get_max_neighbors_mask(natoms, edge_index[1], dist_sq, max_neighbors, enforce_max_strictly=strict)
    if not bool(torch.all(cap)):
        edge_index, offsets = edge_index[:, cap], offsets[cap]
    return Edges(edge_index=edge_index, cell_offsets=offsets)


class VerletList:
    """Edges of one structure within ``cutoff``, rebuilt lazily with a ``skin`` buffer (Å).

    ``skin=0`` rebuilds at every call: the plain fresh graph. ``method`` is the search used for
    the builds (``fairchem`` or ``cell_list``; both give the same edges).
    """

    def __init__(self, cutoff: float, skin: float, max_neighbors: int, strict: bool = False,
                 method: str = "fairchem") -> None:
        if skin < 0:
            raise ValueError(f"the neighbour-list skin must be >= 0 Å, got {skin}")
        if method not in ("fairchem", "cell_list"):
            raise ValueError(f"unknown neighbour search '{method}': choose fairchem or cell_list")
        self.method = method
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.max_neighbors = int(max_neighbors)
        self.strict = strict
        self.num_builds = 0
        self._candidates: Edges | None = None
        self._key: tuple | None = None
        self._pos: torch.Tensor | None = None

    def _needs_build(self, pos: torch.Tensor, key: tuple) -> bool:
        if self._candidates is None or self.skin == 0 or key != self._key or self._pos is None:
            return True
        moved = torch.linalg.norm(pos - self._pos, dim=-1).max()  # largest displacement since the build
        return bool(moved > 0.5 * self.skin)

    def edges(self, pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool], numbers: torch.Tensor) -> Edges:
        """Edges for positions [N, 3] (unwrapped) in ``cell`` [3, 3] with per-axis periodicity ``pbc``."""
        key = (tuple(numbers.tolist()), tuple(bool(p) for p in pbc), tuple(cell.flatten().tolist()))
        if self._needs_build(pos, key):
            self._candidates = radius_edges(pos, cell, pbc, self.cutoff + self.skin, 0, self.strict, self.method)
            self._key = key
            self._pos = pos.detach().clone()
            self.num_builds += 1
        return filter_edges(self._candidates, pos, cell, self.cutoff, self.max_neighbors, self.strict)
