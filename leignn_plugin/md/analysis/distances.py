"""Interatomic distances under the minimum-image convention and h(r), their distribution.

h(r) is the normalized histogram of all N(N-1)/2 interatomic distances of a frame, averaged over
frames (integral 1 over [0, r_max] for distances inside the range): the structural fingerprint used
for molecules, which have no density and hence no g(r).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def minimum_image(vectors: np.ndarray, cell: np.ndarray, pbc) -> np.ndarray:
    """Map difference vectors [..., 3] to their nearest periodic image along periodic axes.

    Exact for distances below half the smallest perpendicular cell width (see :func:`half_width`).
    """
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        return vectors
    frac = vectors @ np.linalg.inv(cell)  # [..., 3]
    frac = frac - np.where(pbc, np.round(frac), 0.0)
    return frac @ cell


def half_width(cell: np.ndarray, pbc) -> float:
    """Half the smallest distance between opposite faces over periodic axes (inf without periodicity)."""
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        return float("inf")
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return 0.5 * min(w for w, p in zip(widths, pbc) if p)


def pair_distances(positions: np.ndarray, cell: np.ndarray, pbc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances [P] of all pairs i < j of one frame ([N, 3]) with their indices i [P] and j [P]."""
    i, j = np.triu_indices(positions.shape[0], k=1)
    vectors = minimum_image(positions[j] - positions[i], cell, pbc)  # [P, 3]
    return np.linalg.norm(vectors, axis=-1), i, j


@dataclass
class DistanceDistribution:
    """h(r) on bin centres ``r`` [B]; ``per_frame`` [T, B] keeps each frame's h for windowed analyses."""

    r: np.ndarray
    h: np.ndarray
    per_frame: np.ndarray

    @property
    def dr(self) -> float:
        return float(self.r[1] - self.r[0])


def distance_distribution(
    positions: np.ndarray, cells: np.ndarray, pbc, r_max: float = 10.0, bins: int = 500
) -> DistanceDistribution:
    """h(r) of frames ``positions`` [T, N, 3] with cells [T, 3, 3] (minimum image along periodic axes)."""
    if positions.shape[1] < 2:
        raise ValueError("h(r) needs at least two atoms")
    edges = np.linspace(0.0, r_max, bins + 1)
    dr = edges[1] - edges[0]
    npairs = positions.shape[1] * (positions.shape[1] - 1) // 2
    per_frame = np.empty((positions.shape[0], bins))
    for t in range(positions.shape[0]):
        distances, _, _ = pair_distances(positions[t], cells[t], pbc)
        counts, _ = np.histogram(distances, bins=edges)
        per_frame[t] = counts / (npairs * dr)
    return DistanceDistribution(r=0.5 * (edges[1:] + edges[:-1]), h=per_frame.mean(axis=0), per_frame=per_frame)
