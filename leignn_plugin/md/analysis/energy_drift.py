"""Total-energy drift of an NVE run: slope of a linear fit, in meV per atom per ps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EnergyDrift:
    """Linear-fit drift and the largest excursion from the first value, both per atom, in meV."""

    drift_meV_per_atom_ps: float
    max_deviation_meV_per_atom: float
    std_meV_per_atom: float


def energy_drift(time_ps: np.ndarray, total_energy_eV: np.ndarray, natoms: int) -> EnergyDrift:
    """Drift of total energies [T] (eV) at times [T] (ps) for a system of ``natoms`` atoms."""
    if time_ps.shape[0] < 2:
        raise ValueError("the energy drift needs at least two logged steps")
    per_atom = 1000.0 * np.asarray(total_energy_eV, dtype=float) / natoms  # meV/atom
    slope = np.polyfit(np.asarray(time_ps, dtype=float), per_atom, 1)[0]
    return EnergyDrift(
        drift_meV_per_atom_ps=float(slope),
        max_deviation_meV_per_atom=float(np.max(np.abs(per_atom - per_atom[0]))),
        std_meV_per_atom=float(np.std(per_atom)),
    )
