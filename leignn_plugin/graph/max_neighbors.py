"""fairchem's rule for capping the neighbours of an atom, on any edge order.

Each atom keeps its ``max_neighbors`` nearest neighbours and, unless ``strict``, every further one
whose squared distance is within 0.01 Å^2 of the (max_neighbors + 1)-th nearest's: so that
degenerate shells (crystals) are kept or dropped whole and energies do not depend on the choice of
unit cell. That is fairchem's ``get_max_neighbors_mask`` exactly, written here over plain torch
(it is the one piece of fairchem's graph code the plugin needs without fairchem installed);
``tests/test_graph.py`` checks the two agree.
"""

from __future__ import annotations

import torch

DEGENERACY_TOLERANCE = 0.01  # Å^2, on squared distances, as fairchem


def max_neighbors_mask(
    target: torch.Tensor,
    dist_sq: torch.Tensor,
    num_atoms: int,
    max_neighbors: int,
    strict: bool = False,
) -> torch.Tensor:
    """Which edges [E] (with targets ``target`` [E] and squared lengths ``dist_sq`` [E]) to keep.

    ``max_neighbors`` <= 0 keeps everything. ``strict`` keeps exactly ``max_neighbors`` per atom,
    cutting ties arbitrarily (fairchem's ``enforce_max_neighbors_strictly``).
    """
    num_edges = target.shape[0]
    keep = torch.ones(num_edges, dtype=torch.bool, device=target.device)
    if max_neighbors <= 0 or num_edges == 0:
        return keep
    counts = torch.bincount(target, minlength=num_atoms)  # [N]
    if int(counts.max()) <= max_neighbors:
        return keep
    by_distance = torch.argsort(dist_sq, stable=True)  # [E]
    order = by_distance[torch.argsort(target[by_distance], stable=True)]  # [E], by atom, then distance
    sorted_target, sorted_d2 = target[order], dist_sq[order]
    rank = torch.arange(num_edges, device=target.device) - (torch.cumsum(counts, 0) - counts)[sorted_target]  # [E]
    if strict:
        keep_sorted = rank < max_neighbors
    else:
        # squared distance of each atom's (max_neighbors + 1)-th nearest neighbour (inf if it has fewer)
        limit = torch.full((num_atoms,), float("inf"), dtype=dist_sq.dtype, device=target.device)  # [N]
        at_limit = rank == max_neighbors
        limit[sorted_target[at_limit]] = sorted_d2[at_limit]
        keep_sorted = sorted_d2 <= limit[sorted_target] + DEGENERACY_TOLERANCE
    keep[order] = keep_sorted
    return keep
