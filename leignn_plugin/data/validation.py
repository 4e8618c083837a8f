"""Checks that a frame is physically and numerically usable before it is written.

Each check raises :class:`DataError` with a single line starting with the frame's origin
(``"file: frame k"``), so a bad frame in a large file can be found and fixed directly. The
structure itself (finite positions and cell, known elements, no atoms closer than ``min_distance``,
periodic images included) is checked by the same code that checks every structure the model sees
(``leignn_plugin.graph.sanity``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.errors import StructureError
from leignn_plugin.graph.extent import check_extent
from leignn_plugin.graph.sanity import (
    DEFAULT_MIN_DISTANCE,
    StructureNames,
    check_close_atoms,
    check_elements,
    check_finite,
)

MIN_DISTANCE_SETTING = "--min-distance"


class FrameStructureError(DataError, StructureError):
    """A frame whose structure no potential should be asked about (a :class:`DataError` for the data
    tools, a :class:`StructureError` like the same problem anywhere else)."""


def validate_frame(
    frame: Frame,
    *,
    require_labels: bool = True,
    require_stress: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> None:
    """Raise :class:`DataError` if the frame cannot be written faithfully.

    Args:
        frame: The frame to check.
        require_labels: Whether energy and forces must be present (S2EF data) or not (IS2RE data).
        require_stress: Whether a stress tensor must be present.
        min_distance: Atoms closer than this (Å, periodic images included) are refused; 0 allows them.

    Raises:
        DataError: Missing labels, non-finite values, mismatched shapes, a degenerate periodic
            cell, an atomic number outside 1..118, or two atoms closer than ``min_distance``.
    """
    where = frame.origin
    natoms = frame.natoms
    if natoms == 0:
        raise DataError(f"{where}: structure has no atoms")
    pos, cell, pbc, counts, name = _structure_tensors(frame)
    with _as_data_error():
        check_finite(pos, cell, counts, name)
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
    with _as_data_error():
        check_extent(pos, cell, pbc, counts, name, min_distance, MIN_DISTANCE_SETTING)
        check_elements(torch.as_tensor(frame.atoms.numbers), counts, name=name)
        check_close_atoms(pos, cell, pbc, counts, min_distance, name, MIN_DISTANCE_SETTING)


def _structure_tensors(frame: Frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                StructureNames]:
    """The frame as a batch of one for ``graph.sanity``: positions [N, 3], cell [1, 3, 3], pbc [1, 3],
    natoms [1], and its name (the frame's origin)."""
    pos = torch.as_tensor(np.asarray(frame.atoms.positions, dtype=np.float64))  # [N, 3]
    cell = torch.as_tensor(np.asarray(frame.atoms.cell.array, dtype=np.float64)).view(1, 3, 3)
    pbc = torch.as_tensor(np.asarray(frame.atoms.pbc, dtype=bool)).view(1, 3)
    return pos, cell, pbc, torch.tensor([frame.natoms]), lambda _: frame.origin


@contextmanager
def _as_data_error() -> Iterator[None]:
    """A structure problem found by ``graph.sanity`` becomes a :class:`FrameStructureError`."""
    try:
        yield
    except StructureError as err:
        raise FrameStructureError(str(err)) from None


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

