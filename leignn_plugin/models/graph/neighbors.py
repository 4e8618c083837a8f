"""Which atom pairs are edges: fairchem's radius graph, or the edges stored in the dataset.

The search runs on a detached float32 copy of positions and cell: it only decides *which* pairs are
edges. Edge vectors are then recomputed from the real positions in the input's dtype
(``geometry.py``), because fairchem's ``get_pbc_distances`` casts the cell to float32 (float64 runs
would lose precision) and would not see a strain applied for the stress.

Two things fairchem's ``radius_graph_pbc`` does not do are handled here: atoms outside the cell
(MD trajectories are not wrapped) are wrapped before the search and the lattice offsets corrected,
and a batch whose structures differ in periodicity (molecules beside slabs) is searched per
periodicity pattern. Molecules go through the same search with periodicity switched off, which
needs no torch_cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from fairchem.core.common.utils import radius_graph_pbc

from leignn_plugin.models.graph.cell_list import cell_list_graph

GRAPH_METHODS = ("fairchem", "cell_list")


@dataclass
class NeighborGraph:
    """edge_index [2, E] as (source j, target i) and integer lattice offsets [E, 3] of j's image."""

    edge_index: torch.Tensor
    cell_offsets: torch.Tensor


def structure_cells(data, num_graphs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The cells of a batch as [B, 3, 3]; zeros for data without a cell (molecules)."""
    cell = getattr(data, "cell", None)
    if cell is None:
        return torch.zeros((num_graphs, 3, 3), dtype=dtype, device=device)
    return cell.view(-1, 3, 3).to(dtype)


def structure_pbc(data, num_graphs: int, use_pbc: bool, device: torch.device) -> torch.Tensor:
    """Per-structure, per-axis periodicity [B, 3] (from ``data.pbc``, all True when absent)."""
    if not use_pbc:
        return torch.zeros((num_graphs, 3), dtype=torch.bool, device=device)
    pbc = getattr(data, "pbc", None)
    if pbc is None:
        return torch.ones((num_graphs, 3), dtype=torch.bool, device=device)
    return torch.as_tensor(pbc, device=device).bool().view(-1, 3).expand(num_graphs, 3)


def periodic_flags(data, use_pbc: bool) -> list[bool]:
    """Axes periodic in at least one structure of the batch."""
    pbc = structure_pbc(data, data.natoms.numel(), use_pbc, data.pos.device)
    return [bool(p) for p in pbc.any(dim=0).tolist()]


def _wrap_into_cell(
    pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap positions [N, 3] into their cells along periodic axes; returns wrapped positions and
    the integer lattice shifts [N, 3] that were subtracted."""
    # structures without a usable cell (molecules, degenerate cells) are left as they are
    usable = pbc.any(dim=1) & (torch.linalg.det(cell).abs() > 1e-8)  # [B]
    safe_cell = torch.where(usable.view(-1, 1, 1), cell, torch.eye(3, dtype=cell.dtype, device=cell.device))
    atom_cell = safe_cell[batch]  # [N, 3, 3]
    frac = torch.linalg.solve(atom_cell.transpose(1, 2), pos.unsqueeze(-1)).squeeze(-1)  # [N, 3]
    wrap = pbc[batch] & usable[batch].unsqueeze(-1)  # [N, 3]
    shift = torch.where(wrap, torch.floor(frac), torch.zeros_like(frac))  # [N, 3]
    wrapped = pos - torch.einsum("nk,nkl->nl", shift, atom_cell)  # [N, 3]
    return wrapped, shift


def _search(
    pos: torch.Tensor,
    cell: torch.Tensor,
    natoms: torch.Tensor,
    pbc: list[bool],
    cutoff: float,
    max_neighbors: int,
    strict: bool,
    method: str = "fairchem",
) -> tuple[torch.Tensor, torch.Tensor]:
    """fairchem's radius graph (or the cell list's, the same edges) for one periodicity pattern."""
    if method == "cell_list":
        edge_index, cell_offsets, _ = cell_list_graph(pos, cell, natoms, cutoff, max_neighbors, pbc, strict)
        return edge_index, cell_offsets
    search = SimpleNamespace(pos=pos, cell=cell, natoms=natoms)
    edge_index, cell_offsets, _ = radius_graph_pbc(search, cutoff, max_neighbors, strict, pbc=list(pbc))
    return edge_index, cell_offsets


def neighbor_graph(
    data,
    cutoff: float,
    max_neighbors: int,
    use_pbc: bool,
    otf_graph: bool,
    enforce_max_neighbors_strictly: bool,
    method: str = "fairchem",
) -> NeighborGraph:
    """Edges within ``cutoff`` (at most ``max_neighbors`` per atom, fairchem's tie rule).

    ``method`` picks the search: ``fairchem`` (all pairs per structure, O(N^2) memory) or
    ``cell_list`` (linear in N, the same edges in the same order).
    """
    if method not in GRAPH_METHODS:
        raise ValueError(f"unknown graph_method '{method}': choose one of {', '.join(GRAPH_METHODS)}")
    pos = data.pos
    stored = getattr(data, "edge_index", None)
    if not otf_graph and stored is not None:
        offsets = getattr(data, "cell_offsets", None) if use_pbc else None
        if offsets is None:
            offsets = torch.zeros((stored.shape[1], 3), dtype=pos.dtype, device=pos.device)
        return NeighborGraph(edge_index=stored.long(), cell_offsets=offsets)

    natoms = data.natoms.view(-1)  # [B]
    num_graphs = natoms.numel()
    batch = torch.repeat_interleave(torch.arange(num_graphs, device=pos.device), natoms)  # [N]
    cell = structure_cells(data, num_graphs, torch.float32, pos.device).detach()  # [B, 3, 3]
    pbc = structure_pbc(data, num_graphs, use_pbc, pos.device)  # [B, 3]
    search_pos = pos.detach().float()  # [N, 3]
    shift = torch.zeros_like(search_pos)  # [N, 3]
    if bool(pbc.any()):
        search_pos, shift = _wrap_into_cell(search_pos, cell, pbc, batch)

    patterns = torch.unique(pbc, dim=0)  # [P, 3]
    if patterns.shape[0] == 1:
        edge_index, offsets = _search(search_pos, cell, natoms, patterns[0].tolist(), cutoff, max_neighbors,
                                      enforce_max_neighbors_strictly, method)
    else:
        edge_parts, offset_parts = [], []
        for pattern in patterns:
            graphs = torch.nonzero(torch.all(pbc == pattern, dim=1)).view(-1)  # [b]
            atoms = torch.nonzero(torch.isin(batch, graphs)).view(-1)  # [n], in batch order
            sub_edges, sub_offsets = _search(search_pos[atoms], cell[graphs], natoms[graphs], pattern.tolist(),
                                             cutoff, max_neighbors, enforce_max_neighbors_strictly, method)
            edge_parts.append(atoms[sub_edges])
            offset_parts.append(sub_offsets)
        edge_index, offsets = torch.cat(edge_parts, dim=1), torch.cat(offset_parts, dim=0)

    # offsets refer to wrapped positions; express them for the positions as given
    j, i = edge_index[0], edge_index[1]
    offsets = offsets + shift[i] - shift[j]  # [E, 3]
    return NeighborGraph(edge_index=edge_index, cell_offsets=offsets)
