"""Helpers for searches that need wrapped positions or one periodicity per call (fairchem's).

vesin needs neither. fairchem's ``radius_graph_pbc`` assumes atoms inside their cell and one
periodicity for the whole batch: :func:`wrapped_search` wraps the positions for it and turns the
offsets back into offsets for the positions as given, and :func:`per_periodicity` runs it once per
pattern of periodic axes in a batch (molecules beside slabs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# search(pos [n, 3], cell [b, 3, 3], pbc [3] bools, natoms [b], cutoff) -> (edge_index [2, E], offsets [E, 3])
PatternSearch = Callable[[torch.Tensor, torch.Tensor, list[bool], torch.Tensor, float],
                         tuple[torch.Tensor, torch.Tensor]]


def wrap_into_cell(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions [N, 3] wrapped into their cells [B, 3, 3] along the periodic axes pbc [B, 3], and the
    integer lattice shifts [N, 3] that were subtracted."""
    # structures without a usable cell (molecules, degenerate cells) are left as they are
    usable = pbc.any(dim=1) & (torch.linalg.det(cell).abs() > 1e-8)  # [B]
    safe_cell = torch.where(usable.view(-1, 1, 1), cell, torch.eye(3, dtype=cell.dtype, device=cell.device))
    atom_cell = safe_cell[batch]  # [N, 3, 3]
    frac = torch.linalg.solve(atom_cell.transpose(1, 2), pos.unsqueeze(-1)).squeeze(-1)  # [N, 3]
    wrap = pbc[batch] & usable[batch].unsqueeze(-1)  # [N, 3]
    shift = torch.where(wrap, torch.floor(frac), torch.zeros_like(frac))  # [N, 3]
    wrapped = pos - torch.einsum("nk,nkl->nl", shift, atom_cell)  # [N, 3]
    return wrapped, shift


def per_periodicity(search: PatternSearch, pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                    natoms: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``search`` on wrapped positions, once per periodicity pattern of the batch; returns
    edge_index [2, E] (j, i) and offsets [E, 3] (long) for the positions as given."""
    batch = torch.repeat_interleave(torch.arange(natoms.numel(), device=pos.device), natoms)  # [N]
    shift = torch.zeros_like(pos)  # [N, 3]
    if bool(pbc.any()):
        pos, shift = wrap_into_cell(pos, cell, pbc, batch)
    edge_parts, offset_parts = [], []
    for pattern in torch.unique(pbc, dim=0):  # [3]
        graphs = torch.nonzero(torch.all(pbc == pattern, dim=1)).view(-1)  # [b]
        atoms = torch.nonzero(torch.isin(batch, graphs)).view(-1)  # [n], in batch order
        edges, offsets = search(pos[atoms], cell[graphs], [bool(p) for p in pattern.tolist()], natoms[graphs],
                                cutoff)
        edge_parts.append(atoms[edges])
        offset_parts.append(offsets.to(shift.dtype))
    edge_index, offsets = torch.cat(edge_parts, dim=1), torch.cat(offset_parts)
    j, i = edge_index[0], edge_index[1]
    offsets = offsets + shift[i] - shift[j]  # [E, 3], for the positions as given
    return edge_index, offsets.round().long()
