"""Checks that a frame is physically and numerically usable before it is written.

Each check raises :class:`DataError` with a single line starting with the frame's origin
(``"file: frame k"``), so a bad frame in a large file can be found and fixed directly.
"""

from __future__ import annotations

import numpy as np

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame

MIN_DISTANCE = 0.1
"""Atoms closer than this (Å, minimum image for periodic cells) are reported as overlapping."""

OVERLAP_BLOCK = 256
"""Rows of the pair-distance matrix computed at once."""


def validate_frame(frame: Frame, *, require_labels: bool = True, require_stress: bool = False) -> None:
    """Raise :class:`DataError` if the frame cannot be written faithfully.

    Args:
        frame: The frame to check.
        require_labels: Whether energy and forces must be present (S2EF data) or not (IS2RE data).
        require_stress: Whether a stress tensor must be present.

    Raises:
        DataError: Missing labels, non-finite values, mismatched shapes, a degenerate periodic
            cell, or two atoms closer than :data:`MIN_DISTANCE`.
    """
    where = frame.origin
    natoms = frame.natoms
    if natoms == 0:
        raise DataError(f"{where}: structure has no atoms")
    _check_finite(where, "positions", frame.atoms.positions)
    _check_finite(where, "cell", frame.atoms.cell.array)
    if require_labels:
        _check_labels(frame)
    if require_stress:
        if frame.stress is None:
            raise DataError(
                f"{where}: no stress found, but earlier frames have one (drop it with --no-stress)"
            )
        _check_array(where, "stress", frame.stress, (3, 3))
    for key, value in frame.extras.items():
        array = np.asarray(value, dtype=np.float64)
        _check_finite(where, key, array)
        if array.ndim == 2:
            _check_array(where, key, array, (natoms, 3))
    _check_cell(frame)
    _check_overlaps(frame)


def _check_labels(frame: Frame) -> None:
    """Energy present and finite; forces present, finite and shaped (natoms, 3)."""
    where = frame.origin
    if frame.energy is None:
        raise DataError(f"{where}: no energy found")
    if not np.isfinite(frame.energy):
        raise DataError(f"{where}: energy is {frame.energy}")
    if frame.forces is None:
        raise DataError(f"{where}: no forces found")
    _check_array(where, "forces", frame.forces, (frame.natoms, 3))


def _check_array(where: str, name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Shape must match exactly and every value must be finite."""
    if array.shape != shape:
        raise DataError(f"{where}: {name} have shape {array.shape}, expected {shape}")
    _check_finite(where, name, array)


def _check_finite(where: str, name: str, array: np.ndarray) -> None:
    """Report the first non-finite entry (and its atom, for per-atom arrays)."""
    bad = ~np.isfinite(np.asarray(array, dtype=np.float64))
    if bad.any():
        first = np.argwhere(bad)[0]
        what = f" (atom {first[0]})" if bad.ndim == 2 and name != "cell" else ""
        raise DataError(f"{where}: {name} contain NaN or inf{what}")


def _check_cell(frame: Frame) -> None:
    """Periodic directions need a cell at least ``2 * MIN_DISTANCE`` thick.

    That also rules out an atom overlapping its own periodic image, and makes the plain
    (rounded fractional) minimum image used by :func:`_check_overlaps` exact at this distance.
    """
    pbc = frame.atoms.pbc
    if not pbc.any():
        return
    lengths = frame.atoms.cell.lengths()
    cell = frame.atoms.cell.complete()
    volume = abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
    for axis in np.flatnonzero(pbc):
        others = [k for k in range(3) if k != axis]
        area = float(np.linalg.norm(np.cross(cell[others[0]], cell[others[1]])))
        if lengths[axis] < 2 * MIN_DISTANCE or area == 0.0 or volume / area < 2 * MIN_DISTANCE:
            raise DataError(
                f"{frame.origin}: periodic along axis {axis} but the cell is degenerate in that direction"
            )


def _inverse_3x3(matrix: np.ndarray) -> np.ndarray:
    """Inverse by cofactors; avoids a LAPACK call (and its thread start-up) for every frame."""
    a, b, c = matrix
    cofactors = np.array([np.cross(b, c), np.cross(c, a), np.cross(a, b)])
    return cofactors.T / float(np.dot(a, cofactors[0]))


def _check_overlaps(frame: Frame) -> None:
    """No two atoms closer than :data:`MIN_DISTANCE` (minimum image along periodic axes).

    Pairs are compared in blocks of rows, so memory stays at ``OVERLAP_BLOCK * natoms`` vectors.
    """
    atoms = frame.atoms
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = atoms.cell.complete() if pbc.any() else np.eye(3)
    coordinates = atoms.positions @ _inverse_3x3(np.asarray(cell, dtype=np.float64))
    natoms = len(atoms)
    columns = np.arange(natoms)
    for start in range(0, natoms, OVERLAP_BLOCK):
        stop = min(start + OVERLAP_BLOCK, natoms)
        delta = coordinates[None, :, :] - coordinates[start:stop, None, :]
        delta[..., pbc] -= np.round(delta[..., pbc])
        vectors = np.einsum("ijk,kl->ijl", delta, cell)
        distance = np.sqrt(np.einsum("ijk,ijk->ij", vectors, vectors))
        distance[columns[None, :] <= np.arange(start, stop)[:, None]] = np.inf
        close = np.argwhere(distance < MIN_DISTANCE)
        if len(close):
            i, j = int(close[0][0]) + start, int(close[0][1])
            raise DataError(
                f"{frame.origin}: atoms {i} and {j} overlap "
                f"({distance[close[0][0], j]:.3f} Å apart, minimum is {MIN_DISTANCE} Å)"
            )
