"""All pairs within a cutoff for one structure, by vesin's cell list (linear in atoms).

vesin handles what a hand-written search has to: positions outside the cell (MD trajectories are
not wrapped), per-axis periodicity (slabs, wires), cells smaller than the cutoff (an atom sees
several images of a neighbour, and its own) and triclinic cells. Its pair sets are identical to
ASE's for all of these (its cost at 100k atoms: benchmarks/README.md, "Neighbour lists").

One thing it does not survive: vesin bins atoms into cells of about the cutoff, and when that grid
would exceed 100,000 cells it shrinks it keeping the axes' ratios, truncating each count to an
integer. A flat grid (a 2000 x 2000 Å sheet, 333 x 333 x 1 cells at 6 Å) then truncates an axis to 0
cells and vesin divides by zero: the process dies with SIGFPE. :func:`search_radius` predicts vesin's
grid (its ``CellList`` sizing, vesin 0.6) and widens the search radius just enough that no axis
collapses; the pairs beyond the cutoff are dropped again, so the result is the same.
Where atoms may be at all (far-flung atoms, degenerate cells) is :mod:`leignn_plugin.graph.extent`'s
business, checked before any search.
"""

from __future__ import annotations

import numpy as np
import torch
import vesin

VESIN_MAX_CELLS = 1e5  # vesin's MAX_NUMBER_OF_CELLS: above it, its cell grid is shrunk
WIDEN = 1.25  # search radius step when vesin's grid would collapse

def _canonical_order(i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor, num_atoms: int) -> torch.Tensor:
    """The permutation that sorts pairs by target i, then source j, then image.

    vesin's thread pool may emit the pairs of one structure in any order; sorted, the edges (and so
    every float sum over them) repeat exactly from run to run, and edges with the same target are
    adjacent, which keeps the message scatter cache-friendly on large systems (benchmarks/README.md,
    "Neighbour lists").
    """
    span = int(shifts.abs().max()) + 1 if shifts.numel() else 1
    side = 2 * span + 1
    key = i * num_atoms + j  # [P]
    if num_atoms * num_atoms * side**3 < 2**62:
        code = ((shifts[:, 0] + span) * side + shifts[:, 1] + span) * side + shifts[:, 2] + span  # [P]
        key = key * side**3 + code
    return torch.sort(key, stable=True).indices  # radix sort: 0.1 s for 4.2M pairs on 2 cores


def structure_pairs(pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool], cutoff: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs within ``cutoff`` of one structure, sorted by target: (target i [P], source j [P],
    offsets [P, 3], squared distances [P] in float64).

    pos [n, 3], cell [3, 3] (rows are lattice vectors; ignored along non-periodic axes). The image
    of j is at pos_j + offsets @ cell. Both directions of every pair are listed.
    """
    n = pos.shape[0]
    device = pos.device
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros((0, 3), dtype=torch.long, device=device), torch.zeros(0, device=device)
    points = pos.detach().to("cpu", torch.float64).numpy()
    box = cell.detach().to("cpu", torch.float64).numpy()
    periodic = [bool(p) for p in pbc]
    radius = search_radius(points, box, periodic, float(cutoff))
    search = vesin.NeighborList(cutoff=radius, full_list=True)
    i, j, shifts, distances = search.compute(points, box, periodic, "ijSd", copy=False)
    if radius > cutoff:
        within = distances < cutoff  # [P]
        i, j, shifts, distances = i[within], j[within], shifts[within], distances[within]
    i, j = torch.from_numpy(i.astype(np.int64)), torch.from_numpy(j.astype(np.int64))  # [P]
    shifts, distances = torch.from_numpy(shifts.astype(np.int64)), torch.from_numpy(distances.copy())
    order = _canonical_order(i, j, shifts, n)
    return (i[order].to(device), j[order].to(device), shifts[order].to(device),
            distances[order].square().to(device))


def _face_distances(points: np.ndarray, box: np.ndarray, periodic: list[bool]) -> np.ndarray:
    """vesin's box widths [3] (Å): along a periodic axis the distance between the cell's faces, with the
    non-periodic rows replaced by unit vectors normal to the periodic ones (as vesin does), along a
    non-periodic axis the atoms' extent plus 1% (at least 1 Å)."""
    matrix = np.array(box, dtype=np.float64)  # [3, 3]
    axes = [d for d in range(3) if periodic[d]]
    if not axes:
        matrix = np.eye(3)
    elif len(axes) == 1:
        a = matrix[axes[0]]
        b = np.array([0.0, 1.0, 0.0]) if abs(a[1]) <= 0.9 * np.linalg.norm(a) else np.array([0.0, 0.0, 1.0])
        c = np.cross(a, b)
        c /= np.linalg.norm(c)
        b = np.cross(c, a)
        matrix[(axes[0] + 1) % 3], matrix[(axes[0] + 2) % 3] = b / np.linalg.norm(b), c
    elif len(axes) == 2:
        normal = np.cross(matrix[axes[0]], matrix[axes[1]])
        matrix[3 - axes[0] - axes[1]] = normal / np.linalg.norm(normal)
    span = np.ptp(points, axis=0)  # [3]
    span = np.where(span < 1e-6, 1.0, span)
    widths = np.maximum(1.01 * span, 1.0)  # [3], non-periodic axes
    for d in axes:
        face = np.cross(matrix[(d + 1) % 3], matrix[(d + 2) % 3])  # [3], normal of the faces across d
        widths[d] = abs(float(face @ matrix[d])) / np.linalg.norm(face)
    return widths


def _grid_collapses(widths: np.ndarray, radius: float) -> bool:
    """Whether vesin's cell grid for box ``widths`` [3] at ``radius`` shrinks an axis to no cells
    (vesin's ``CellList`` sizing, with a small margin for rounding)."""
    counts = np.maximum(np.trunc(widths / radius), 1.0)  # [3]
    if float(np.prod(counts)) <= VESIN_MAX_CELLS * (1 - 1e-9):
        return False
    ratio_xy, ratio_yz = counts[0] / counts[1], counts[1] / counts[2]
    z = np.cbrt(VESIN_MAX_CELLS / (ratio_xy * ratio_yz * ratio_yz))
    y = ratio_yz * np.trunc(z)
    x = ratio_xy * np.trunc(y)
    return min(z, y, x) < 1.0 + 1e-9


def search_radius(points: np.ndarray, box: np.ndarray, periodic: list[bool], cutoff: float) -> float:
    """The radius to give vesin for pairs within ``cutoff``: the cutoff itself unless vesin's cell grid
    would collapse (see the module docstring), then the smallest radius up in steps of 25% that keeps
    every axis. Bounded: a box below 100,000 cells of the radius never collapses."""
    extent = np.where(periodic, np.linalg.norm(box, axis=1), np.ptp(points, axis=0) * 1.01 + 1.0)  # [3]
    if float(np.prod(np.maximum(extent / cutoff, 1.0))) <= VESIN_MAX_CELLS * (1 - 1e-9):
        return cutoff  # the usual case: a grid under vesin's limit, whatever the exact widths
    widths = _face_distances(points, box, periodic)
    radius = cutoff
    while _grid_collapses(widths, radius):
        radius *= WIDEN
    return radius
