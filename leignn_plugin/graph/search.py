"""Neighbour search for a batch of structures: the one entry point of the model, the calculator and
the benchmarks.

``neighbor_graph`` finds every pair within the cutoff with a search method, then keeps the edges
within the cutoff that are not coincident atoms, capped by fairchem's ``max_neighbors`` rule
(``select_edges``, also used by the Verlet list between rebuilds). Methods: ``vesin`` (the default,
linear in atoms) and whatever a host registers (the fairchem adapter registers fairchem's
``radius_graph_pbc`` as ``fairchem``, the reference the tests compare against). ``cell_list``, the
name of the hand-written cell list that vesin replaced, is kept as an alias so old configs load.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from leignn_plugin.core.geometry import COINCIDENT_DISTANCE_SQ
from leignn_plugin.graph.extent import check_extent
from leignn_plugin.graph.max_neighbors import max_neighbors_mask
from leignn_plugin.graph.sanity import CloseAtoms
from leignn_plugin.graph.types import NeighborGraph, StructureNames, numbered
from leignn_plugin.graph.vesin_search import structure_pairs

# search(pos [N, 3], cell [B, 3, 3], pbc [B, 3] bool, natoms [B], cutoff)
#   -> (edge_index [2, E], offsets [E, 3], squared lengths [E] in float64, or None to have them computed)
BatchSearch = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float],
                       tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def vesin_batch(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, natoms: torch.Tensor, cutoff: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vesin, one structure at a time (each with its own periodicity); edges sorted by target."""
    edges, offsets, dist_sq, first = [], [], [], 0
    for s, count in enumerate(natoms.tolist()):
        i, j, shifts, d2 = structure_pairs(pos[first:first + count], cell[s], pbc[s].tolist(), cutoff)
        edges.append(torch.stack([j, i]) + first)
        offsets.append(shifts)
        dist_sq.append(d2)
        first += count
    if not edges:
        return (torch.zeros((2, 0), dtype=torch.long, device=pos.device),
                torch.zeros((0, 3), dtype=torch.long, device=pos.device), pos.new_zeros(0, dtype=torch.float64))
    return torch.cat(edges, dim=1), torch.cat(offsets), torch.cat(dist_sq)


SEARCH_METHODS: dict[str, BatchSearch] = {"vesin": vesin_batch}
ALIASES = {"cell_list": "vesin"}


def register_search(name: str, search: BatchSearch) -> None:
    """Make ``search`` available as ``graph_method: name``."""
    SEARCH_METHODS[name] = search


def graph_methods() -> tuple[str, ...]:
    """The names ``graph_method`` accepts here."""
    return (*SEARCH_METHODS, *ALIASES)


def check_method(method: str) -> str:
    """The search registered as ``method`` (aliases resolved), or one line listing the known ones."""
    resolved = ALIASES.get(method, method)
    if resolved not in SEARCH_METHODS:
        raise ValueError(f"unknown graph_method '{method}': choose one of {', '.join(graph_methods())}")
    return resolved


def edge_dist_sq(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                 offsets: torch.Tensor) -> torch.Tensor:
    """Squared edge lengths [E] in float64 (what the cutoff and the neighbour cap compare)."""
    pos, cell = pos.detach().double(), cell.detach().double()
    j, i = edge_index[0], edge_index[1]
    if cell.shape[0] == 1:  # one structure (MD): one matmul instead of a [E, 3, 3] gather of cells
        shift = offsets.double() @ cell[0]  # [E, 3]
    else:
        shift = torch.einsum("ek,ekl->el", offsets.double(), cell[batch[i]])  # [E, 3]
    vec = pos[i] - pos[j] - shift  # [E, 3]
    return torch.sum(vec * vec, dim=-1)  # [E]


def select_edges(edge_index: torch.Tensor, offsets: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                 batch: torch.Tensor, cutoff: float, max_neighbors: int, strict: bool,
                 dist_sq: torch.Tensor | None = None, close_atoms: CloseAtoms | None = None) -> NeighborGraph:
    """The candidate edges within ``cutoff`` now, without coincident atoms, capped at ``max_neighbors``
    (``dist_sq``: their squared lengths when the search already has them).

    ``close_atoms``: two atoms closer than its ``min_distance`` raise a ``StructureError`` naming them,
    before the coincident ones would be dropped (it needs ``min_distance`` <= ``cutoff``).
    """
    if dist_sq is None:
        dist_sq = edge_dist_sq(pos, cell, batch, edge_index, offsets)  # [E]
    if close_atoms is not None:
        close_atoms.check(edge_index, offsets, dist_sq, batch)
    keep = (dist_sq <= cutoff * cutoff) & (dist_sq > COINCIDENT_DISTANCE_SQ)
    if not bool(keep.all()):
        edge_index, offsets, dist_sq = edge_index[:, keep], offsets[keep], dist_sq[keep]
    cap = max_neighbors_mask(edge_index[1], dist_sq, pos.shape[0], max_neighbors, strict)
    if not bool(cap.all()):
        edge_index, offsets = edge_index[:, cap], offsets[cap]
    return NeighborGraph(edge_index=edge_index, cell_offsets=offsets)


def neighbor_graph(
    pos: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    natoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int = 0,
    strict: bool = False,
    method: str = "vesin",
    close_atoms: CloseAtoms | None = None,
    name: StructureNames | None = None,
) -> NeighborGraph:
    """Edges within ``cutoff`` of a batch: at most ``max_neighbors`` per atom (<= 0: no cap) by
    fairchem's tie rule, ``strict`` cutting ties arbitrarily; with ``close_atoms``, two atoms closer
    than its ``min_distance`` (at most ``cutoff``) raise a ``StructureError`` naming them.

    Before the search, a structure no search should be given (far-flung atoms, a degenerate periodic
    cell, more atoms than ``min_distance`` lets fit: ``extent.check_extent``) raises a ``StructureError``
    naming it by ``name`` (default: that of ``close_atoms``, else its index).

    pos [N, 3] as given (not necessarily wrapped, finite), cell [B, 3, 3], pbc [B, 3] (bool), natoms [B].
    """
    search = SEARCH_METHODS[check_method(method)]
    natoms = natoms.view(-1).long()
    cell = cell.detach().view(-1, 3, 3)
    pbc = pbc.view(-1, 3).bool()
    if close_atoms is not None:
        check_extent(pos, cell, pbc, natoms, name or close_atoms.name, close_atoms.min_distance,
                     close_atoms.setting)
    else:
        check_extent(pos, cell, pbc, natoms, name or numbered)
    edge_index, offsets, dist_sq = search(pos.detach(), cell, pbc, natoms, float(cutoff))
    batch = torch.repeat_interleave(torch.arange(natoms.numel(), device=pos.device), natoms)  # [N]
    return select_edges(edge_index, offsets.long(), pos, cell, batch, float(cutoff), max_neighbors, strict,
                        dist_sq, close_atoms)
