"""The labelled structure that every source yields and every writer consumes.

Sources (ASE files, MD17 archives, the demo generators) all reduce their input to :class:`Frame`
objects, so validation and conversion to fairchem ``Data`` objects happen in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

ExtraValue = float | int | NDArray[np.float64]


@dataclass(frozen=True)
class Frame:
    """One structure with its reference labels and identifiers.

    Attributes:
        atoms: Geometry only: numbers, positions, cell, pbc, tags and constraints (FixAtoms).
        energy: Total energy in eV, or None when the source had none.
        forces: Forces in eV/Å, shape (natoms, 3), or None when the source had none.
        stress: Stress in eV/Å^3 as a 3x3 matrix (ASE sign convention), or None.
        sid: Integer system id (structure or trajectory), written as ``sid``.
        fid: Integer frame id within that system, written as ``fid``.
        origin: Where the frame came from, e.g. ``"run.xyz: frame 3"``; starts every error message.
        extras: Additional per-sample fields written verbatim (e.g. ``y_relaxed``, ``pos_relaxed``).
    """

    atoms: Atoms
    energy: float | None
    forces: NDArray[np.float64] | None
    stress: NDArray[np.float64] | None
    sid: int
    fid: int
    origin: str
    extras: Mapping[str, ExtraValue] = field(default_factory=dict)

    @property
    def natoms(self) -> int:
        """Number of atoms in the structure."""
        return len(self.atoms)
