"""Frames from MD17-family ``.npz`` archives (sGDML MD17 and revised rMD17).

Two key layouts are recognised: sGDML's ``R, E, F, z`` and rMD17's ``coords, energies, forces,
nuclear_charges``.  Energies come in kcal/mol and forces in kcal/mol/Å in both; they are
converted to eV and eV/Å (1 kcal/mol = 0.0433641 eV).  Molecules are non-periodic.  Every frame
gets ``sid = 0`` (one molecule) and ``fid`` = its index in the archive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from numpy.typing import NDArray

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame

ENERGY_UNITS: dict[str, float] = {
    "kcal/mol": units.kcal / units.mol,
    "kJ/mol": units.kJ / units.mol,
    "eV": 1.0,
}
"""eV per unit; forces are taken in the same unit per Å."""

LAYOUTS: dict[str, dict[str, str]] = {
    "sGDML": {"positions": "R", "energies": "E", "forces": "F", "numbers": "z"},
    "rMD17": {
        "positions": "coords",
        "energies": "energies",
        "forces": "forces",
        "numbers": "nuclear_charges",
    },
}


@dataclass(frozen=True)
class MD17Arrays:
    """The arrays of one archive, in eV, eV/Å and Å."""

    path: Path
    layout: str
    numbers: NDArray[np.int64]
    positions: NDArray[np.float64]
    energies: NDArray[np.float64]
    forces: NDArray[np.float64]

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    def frames(self, indices: Sequence[int]) -> Iterator[Frame]:
        """Yield the frames with the given archive indices, in that order."""
        for index in indices:
            yield Frame(
                atoms=Atoms(numbers=self.numbers, positions=self.positions[index], pbc=False),
                energy=float(self.energies[index]),
                forces=self.forces[index],
                stress=None,
                sid=0,
                fid=int(index),
                origin=f"{self.path}: frame {int(index)}",
            )


def load_md17(path: Path, *, unit: str = "kcal/mol") -> MD17Arrays:
    """Read an archive and convert it to eV, eV/Å.

    Args:
        path: The ``.npz`` file.
        unit: Energy unit of the archive (a key of :data:`ENERGY_UNITS`).

    Raises:
        DataError: Unreadable file, unknown or incomplete key layout, inconsistent shapes.
    """
    if unit not in ENERGY_UNITS:
        raise DataError(f"unknown energy unit {unit!r} (choose from {', '.join(ENERGY_UNITS)})")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            layout, names = _detect_layout(path, keys)
            raw = {role: archive[key] for role, key in names.items()}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    scale = ENERGY_UNITS[unit]
    positions = np.asarray(raw["positions"], dtype=np.float64)
    numbers = np.asarray(raw["numbers"], dtype=np.int64).reshape(-1)
    energies = np.asarray(raw["energies"], dtype=np.float64) * scale
    forces = np.asarray(raw["forces"], dtype=np.float64) * scale
    _check_shapes(path, names, numbers, positions, energies, forces)
    return MD17Arrays(path, layout, numbers, positions, energies.reshape(-1), forces)


def _detect_layout(path: Path, keys: set[str]) -> tuple[str, dict[str, str]]:
    """Pick the layout whose positions key is present; everything else it names must be too."""
    found = ", ".join(sorted(keys)) or "none"
    for layout, names in LAYOUTS.items():
        if names["positions"] in keys:
            missing = [f"{role} ({key!r})" for role, key in names.items() if key not in keys]
            if missing:
                raise DataError(f"{path}: {layout} layout without {', '.join(missing)}; keys found: {found}")
            return layout, names
    raise DataError(
        f"{path}: unknown NPZ keys; expected sGDML (R, E, F, z) or rMD17 "
        f"(coords, energies, forces, nuclear_charges); keys found: {found}"
    )


def _check_shapes(
    path: Path,
    names: dict[str, str],
    numbers: NDArray[np.int64],
    positions: NDArray[np.float64],
    energies: NDArray[np.float64],
    forces: NDArray[np.float64],
) -> None:
    """Positions (M, N, 3), numbers (N,), energies (M,) or (M, 1), forces (M, N, 3)."""
    natoms = numbers.shape[0]
    if positions.ndim != 3 or positions.shape[1:] != (natoms, 3):
        raise DataError(
            f"{path}: {names['positions']!r} has shape {positions.shape}, expected (frames, {natoms}, 3)"
        )
    n_frames = positions.shape[0]
    if energies.ndim == 0 or energies.shape[0] != n_frames or energies.size != n_frames:
        raise DataError(f"{path}: {names['energies']!r} has shape {energies.shape}, expected ({n_frames},)")
    if forces.shape != positions.shape:
        raise DataError(
            f"{path}: {names['forces']!r} has shape {forces.shape}, which does not match the atoms "
            f"(expected {positions.shape})"
        )
    if n_frames == 0:
        raise DataError(f"{path}: contains no frames")
