"""Linear-scaling radius graph (cell list) with fairchem's conventions and neighbour rule.

fairchem's ``radius_graph_pbc`` compares every atom pair of a structure with every periodic image
(O(N^2) memory). Here atoms are binned into cells at least ``cutoff`` wide (in fractional
coordinates, so triclinic cells work), and each atom is compared only with the atoms of its own and
the adjacent cells. The output is fairchem's: ``edge_index`` [2, E] = (source j, target i) sorted
as fairchem sorts it (by i, then j, then image), integer image offsets [E, 3] (float, as fairchem
returns them) with ``vec = pos[j] - pos[i] + offsets @ cell``, the same distance tests (d^2 <=
cutoff^2, d^2 > 1e-4) in float32, and fairchem's own ``get_max_neighbors_mask`` for the
``max_neighbors`` rule and its ties.
"""

from __future__ import annotations

import itertools
import math

import torch
from fairchem.core.common.utils import get_max_neighbors_mask

# Bins are made this much wider than the cutoff, so that rounding in the fractional coordinates
# never hides a pair at the cutoff from the adjacent-cell search.
_BIN_MARGIN = 1e-4
# Candidate pairs examined at once; bounds the memory of the search for large systems.
_DEFAULT_MAX_PAIRS = 4_000_000


def _binning_frame(pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool], where: str) -> torch.Tensor:
    """Inverse [3, 3] of the basis whose fractional coordinates are binned (Cartesian without a cell)."""
    det = float(torch.linalg.det(cell.double())) if cell.numel() else 0.0
    if abs(det) > 1e-6:
        return torch.linalg.inv(cell.double()).to(pos.dtype)
    if any(pbc):
        raise ValueError(f"{where}: periodic structure with a singular cell (volume {det:.3g})")
    return torch.eye(3, dtype=pos.dtype, device=pos.device)


def _structure_edges(
    pos: torch.Tensor, cell: torch.Tensor, cutoff: float, pbc: list[bool], max_pairs: int, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs within ``cutoff`` of one structure: (i, j, offsets [E, 3] long, d^2 [E]), fairchem order."""
    n = pos.shape[0]
    device = pos.device
    inv = _binning_frame(pos, cell, pbc, where)
    heights = 1.0 / torch.linalg.norm(inv.double(), dim=0)  # [3], plane spacings of the frame
    frac = pos @ inv  # [n, 3]
    periodic = torch.tensor(pbc, device=device)
    wrap = torch.where(periodic, torch.floor(frac), torch.zeros_like(frac))  # [n, 3]
    frac = frac - wrap
    wide = cutoff * (1.0 + _BIN_MARGIN)

    num_bins, reach, origin, width = [], [], [], []
    for axis in range(3):
        h = float(heights[axis])
        if pbc[axis]:
            nb = max(1, math.floor(h / wide))
            num_bins.append(nb)
            reach.append(math.ceil(wide * nb / h))
            origin.append(0.0)
            width.append(1.0 / nb)
        else:
            lo = float(frac[:, axis].min()) if n else 0.0
            span = float(frac[:, axis].max()) - lo if n else 0.0
            w = wide / h
            num_bins.append(math.floor(span / w) + 1)
            reach.append(1)
            origin.append(lo)
            width.append(w)
    dims = torch.tensor(num_bins, device=device)  # [3]
    org = torch.tensor(origin, dtype=frac.dtype, device=device)
    wid = torch.tensor(width, dtype=frac.dtype, device=device)
    bin3 = torch.floor((frac - org) / wid).long()  # [n, 3]
    bin3 = torch.minimum(bin3.clamp(min=0), dims - 1)
    bin_id = (bin3[:, 0] * dims[1] + bin3[:, 1]) * dims[2] + bin3[:, 2]  # [n]
    order = torch.argsort(bin_id, stable=True)  # atoms grouped by bin
    counts = torch.bincount(bin_id, minlength=int(dims.prod()))  # [bins]
    starts = torch.cumsum(counts, 0) - counts  # [bins]

    stencil = torch.tensor(
        list(itertools.product(*(range(-r, r + 1) for r in reach))), dtype=torch.long, device=device
    )  # [S, 3]
    max_image = max(reach) + 1
    per_atom = max(1, stencil.shape[0] * int(counts.max()) if n else 1)
    chunk = max(1, max_pairs // per_atom)
    cell32 = cell.to(pos.dtype)
    out_i, out_j, out_off, out_d2 = [], [], [], []
    for start in range(0, n, chunk):
        targets = torch.arange(start, min(n, start + chunk), device=device)  # [C]
        nbr = bin3[targets].unsqueeze(1) + stencil  # [C, S, 3], unwrapped neighbour bins
        image = torch.where(periodic, torch.div(nbr, dims, rounding_mode="floor"), torch.zeros_like(nbr))
        nbr = nbr - image * dims
        valid = ((nbr >= 0) & (nbr < dims)).all(-1)  # [C, S]
        nbr_id = (nbr[..., 0] * dims[1] + nbr[..., 1]) * dims[2] + nbr[..., 2]
        nbr_id = torch.where(valid, nbr_id, torch.zeros_like(nbr_id))
        cnt = torch.where(valid, counts[nbr_id], torch.zeros_like(nbr_id)).view(-1)  # [C*S]
        total = int(cnt.sum())
        if total == 0:
            continue
        slot = torch.repeat_interleave(torch.arange(cnt.numel(), device=device), cnt)  # [P]
        rank = torch.arange(total, device=device) - (torch.cumsum(cnt, 0) - cnt)[slot]  # [P]
        i = targets[slot // stencil.shape[0]]  # [P]
        j = order[starts[nbr_id.view(-1)[slot]] + rank]  # [P]
        # The image of j relative to the input (unwrapped) positions, as fairchem counts offsets.
        off = image.view(-1, 3)[slot] - wrap[j].long() + wrap[i].long()  # [P, 3]
        pos2 = pos[j] + off.to(pos.dtype) @ cell32  # [P, 3]
        d2 = torch.sum((pos[i] - pos2) ** 2, dim=-1)  # [P]
        keep = torch.le(d2, cutoff * cutoff) & torch.gt(d2, 0.0001)
        out_i.append(i[keep])
        out_j.append(j[keep])
        out_off.append(off[keep])
        out_d2.append(d2[keep])
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros((0, 3), dtype=torch.long, device=device), pos.new_zeros(0)
    i, j = torch.cat(out_i), torch.cat(out_j)
    off, d2 = torch.cat(out_off), torch.cat(out_d2)
    span = int(off.abs().max()) + 1 if off.numel() else 1
    span = max(span, max_image)
    side = 2 * span + 1
    image_code = ((off[:, 0] + span) * side + (off[:, 1] + span)) * side + (off[:, 2] + span)  # [E]
    key = (i * n + j) * side**3 + image_code
    sort = torch.argsort(key)
    return i[sort], j[sort], off[sort], d2[sort]


def cell_list_graph(
    pos: torch.Tensor,
    cell: torch.Tensor,
    natoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int,
    pbc: list[bool],
    enforce_max_neighbors_strictly: bool = False,
    max_pairs: int = _DEFAULT_MAX_PAIRS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fairchem's ``radius_graph_pbc`` output from a cell list.

    Args:
        pos: [N, 3] positions (searched in float32).
        cell: [B, 3, 3] cells, rows are lattice vectors (ignored along non-periodic axes).
        natoms: [B] atoms per structure.
        cutoff: radius in Å.
        max_neighbors: fairchem's ``max_num_neighbors_threshold`` (<= 0: no limit).
        pbc: periodicity of the three axes, shared by the batch.
        enforce_max_neighbors_strictly: fairchem's flag for cutting ties.
        max_pairs: candidate pairs examined at once (memory bound of the search).

    Returns:
        edge_index [2, E] (j, i), cell_offsets [E, 3] (float32), neighbours per structure [B].
    """
    pos = pos.detach().float()
    cell = cell.detach().float().view(-1, 3, 3)
    natoms = natoms.view(-1)
    pbc = [bool(p) for p in list(pbc)[:3]]
    if cell.shape[0] != natoms.numel():
        raise ValueError(f"cell_list_graph: {cell.shape[0]} cells for {natoms.numel()} structures")
    all_i, all_j, all_off, all_d2 = [], [], [], []
    first = 0
    for s, count in enumerate(natoms.tolist()):
        i, j, off, d2 = _structure_edges(
            pos[first:first + count], cell[s], float(cutoff), pbc, max_pairs, f"structure {s}"
        )
        all_i.append(i + first)
        all_j.append(j + first)
        all_off.append(off)
        all_d2.append(d2)
        first += count
    index1, index2 = torch.cat(all_i), torch.cat(all_j)
    offsets = torch.cat(all_off).to(torch.float32)  # [E, 3]
    dist_sq = torch.cat(all_d2)  # [E]
    mask, num_neighbors_image = get_max_neighbors_mask(
        natoms=natoms,
        index=index1,
        atom_distance=dist_sq,
        max_num_neighbors_threshold=max_neighbors,
        enforce_max_strictly=enforce_max_neighbors_strictly,
    )
    if not torch.all(mask):
        index1, index2, offsets = index1[mask], index2[mask], offsets[mask]
    return torch.stack((index2, index1)), offsets, num_neighbors_image
