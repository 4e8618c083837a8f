"""Radial distribution functions g(r), total and per element pair, under the minimum-image convention.

g_ab(r) = V / (N_a N_b') * n_ab(r) / (4/3 pi (r_hi^3 - r_lo^3)), with n_ab the number of ordered
pairs (i in a, j in b, i != j) in the shell and N_b' = N_b - 1 when a == b, so that uncorrelated
(ideal-gas) positions give g = 1 at any system size. Needs a cell periodic along all axes and
r_max at most half the smallest cell width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

from leignn_plugin.md.analysis.distances import half_width, pair_distances


@dataclass
class RDF:
    """g(r) on bin centres ``r`` [B]: ``total``, ``pairs`` by "A-B" label, ``per_frame`` [T, B] total."""

    r: np.ndarray
    total: np.ndarray
    per_frame: np.ndarray
    pairs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dr(self) -> float:
        return float(self.r[1] - self.r[0])


def default_r_max(cells: np.ndarray, pbc, limit: float = 6.0) -> float:
    """The largest valid r_max (half the smallest width over all frames), at most ``limit`` Å."""
    return min(limit, min(half_width(cell, pbc) for cell in cells))


def _pair_labels(numbers: np.ndarray) -> list[tuple[int, int]]:
    species = sorted(set(int(z) for z in numbers))
    return [(a, b) for k, a in enumerate(species) for b in species[k:]]


def label(a: int, b: int) -> str:
    return f"{chemical_symbols[a]}-{chemical_symbols[b]}"


def radial_distribution(
    positions: np.ndarray, cells: np.ndarray, pbc, numbers: np.ndarray, r_max: float | None = None, bins: int = 200
) -> RDF:
    """g(r) of frames ``positions`` [T, N, 3] in cells [T, 3, 3], averaged over frames."""
    if not all(bool(p) for p in pbc):
        raise ValueError("g(r) needs a cell periodic along all three axes; use h(r) for molecules")
    limit = min(half_width(cell, pbc) for cell in cells)
    r_max = default_r_max(cells, pbc) if r_max is None else r_max
    if r_max > limit + 1e-9:
        raise ValueError(f"r_max {r_max:.3f} Å exceeds half the smallest cell width ({limit:.3f} Å): "
                         "use a larger supercell or a smaller r_max")
    numbers = np.asarray(numbers)
    natoms = numbers.shape[0]
    edges = np.linspace(0.0, r_max, bins + 1)
    shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # [B]
    pairs = _pair_labels(numbers)
    counts_of = {z: int(np.sum(numbers == z)) for z in set(numbers.tolist())}
    per_frame = np.empty((positions.shape[0], bins))
    pair_sum = {p: np.zeros(bins) for p in pairs}
    for t in range(positions.shape[0]):
        volume = abs(np.linalg.det(cells[t]))
        distances, i, j = pair_distances(positions[t], cells[t], pbc)
        hist, _ = np.histogram(distances, bins=edges)
        per_frame[t] = volume * 2.0 * hist / (natoms * (natoms - 1) * shells)
        zi, zj = numbers[i], numbers[j]
        for a, b in pairs:
            mask = ((zi == a) & (zj == b)) | ((zi == b) & (zj == a))
            hist_ab, _ = np.histogram(distances[mask], bins=edges)
            ordered = 2.0 * hist_ab if a == b else hist_ab  # ordered pairs with i of a, j of b
            na, nb = counts_of[a], counts_of[b] - (1 if a == b else 0)
            if na * nb > 0:
                pair_sum[(a, b)] += volume * ordered / (na * nb * shells)
    frames = positions.shape[0]
    return RDF(r=0.5 * (edges[1:] + edges[:-1]), total=per_frame.mean(axis=0), per_frame=per_frame,
               pairs={label(a, b): pair_sum[(a, b)] / frames for a, b in pairs})
