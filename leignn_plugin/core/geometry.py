"""Differentiable edge geometry: vectors, distances and unit vectors in the input's dtype."""

from __future__ import annotations

from dataclasses import dataclass

import torch

COINCIDENT_DISTANCE_SQ = 1e-4
"""Pairs closer than 0.01 Å (squared, Å^2) are an atom with its own image or itself, never an edge: the
one threshold of the core and the neighbour search (fairchem drops them the same way)."""


@dataclass
class EdgeGeometry:
    """distance [E], unit_vec [E, 3] pointing from neighbour j to atom i, and the kept edge_index."""

    edge_index: torch.Tensor
    distance: torch.Tensor
    unit_vec: torch.Tensor


def apply_strain(
    pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, displacement: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deform positions [N, 3] and cells [B, 3, 3] by (1 + displacement[B, 3, 3]) (row vectors)."""
    pos = pos + torch.einsum("ni,nij->nj", pos, displacement[batch])  # [N, 3]
    cell = cell + torch.bmm(cell, displacement)  # [B, 3, 3]
    return pos, cell


def edge_geometry(
    pos: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
    edge_index: torch.Tensor,
    cell_offsets: torch.Tensor,
    eps: float = 1e-12,
) -> EdgeGeometry:
    """r_ij = pos_i - (pos_j + offset_j @ cell): the vector from j's image to i.

    Coincident pairs (``COINCIDENT_DISTANCE_SQ``: an atom with itself) are dropped, as fairchem does.
    """
    j, i = edge_index[0], edge_index[1]
    offsets = torch.einsum("ek,ekl->el", cell_offsets.to(pos.dtype), cell[batch[i]])  # [E, 3]
    vec = pos[i] - pos[j] - offsets  # [E, 3]
    dist_sq = torch.sum(vec * vec, dim=-1)  # [E]
    keep = dist_sq > COINCIDENT_DISTANCE_SQ
    if not bool(torch.all(keep)):
        edge_index, vec, dist_sq = edge_index[:, keep], vec[keep], dist_sq[keep]
    distance = torch.sqrt(dist_sq + eps)  # [E]
    return EdgeGeometry(edge_index=edge_index, distance=distance, unit_vec=vec / distance.unsqueeze(-1))
