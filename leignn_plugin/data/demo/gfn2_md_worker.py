"""Langevin MD of small molecules labelled with GFN2-xTB, run in a torch-free child process.

tblite's OpenMP runtime clashes with the one bundled with torch (tblite cannot be imported once
torch is loaded), and multi-threaded GFN2 on molecules this small is both slower and not
bit-reproducible.  The demo builder therefore executes this file in a separate interpreter with
``OMP_NUM_THREADS=1``; it imports only numpy, ASE and tblite.  Every MD step is a GFN2-xTB
calculation (about a millisecond for these molecules), so the kept frames carry the energies and
forces that drove the dynamics.

Usage (what the builder runs): ``python -c <loader> gfn2_md_worker.py SPEC_JSON OUT_NPZ``.
"""

from __future__ import annotations

import json
import sys
from itertools import product
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.md.langevin import Langevin


def maxwell_boltzmann_momenta(atoms: Atoms, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Momenta drawn at ``temperature`` (K) with the centre-of-mass momentum removed."""
    masses = atoms.get_masses()
    momenta = rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)[:, None]
    return momenta - masses[:, None] * (momenta.sum(axis=0) / masses.sum())


def sample_trajectory(
    name: str, temperature: float, spec: dict, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Run one trajectory and return the kept frames' positions, energies and forces."""
    from tblite.ase import TBLite

    atoms = molecule(name)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms.set_momenta(maxwell_boltzmann_momenta(atoms, temperature, rng))
    dynamics = Langevin(
        atoms,
        spec["timestep_fs"] * units.fs,
        temperature_K=temperature,
        friction=spec["friction_per_fs"] / units.fs,
        fixcm=False,
        rng=rng,
    )
    dynamics.run(spec["equilibration_steps"])
    frames = spec["frames_per_run"]
    positions = np.empty((frames, len(atoms), 3), dtype=np.float64)
    forces = np.empty((frames, len(atoms), 3), dtype=np.float64)
    energies = np.empty(frames, dtype=np.float64)
    for index in range(frames):
        dynamics.run(spec["stride"])
        positions[index] = atoms.positions
        energies[index] = atoms.get_potential_energy()
        forces[index] = atoms.get_forces(apply_constraint=False)
    return {
        "numbers": atoms.numbers.astype(np.int64),
        "positions": positions,
        "energies": energies,
        "forces": forces,
    }


def run(spec: dict) -> dict[str, np.ndarray]:
    """All trajectories of the spec, keyed ``run{i}_{field}`` in (molecule, temperature) order."""
    arrays: dict[str, np.ndarray] = {}
    runs = list(product(spec["molecules"], spec["temperatures"]))
    for index, (name, temperature) in enumerate(runs):
        rng = np.random.default_rng((spec["seed"], 2, index))
        for field, value in sample_trajectory(name, float(temperature), spec, rng).items():
            arrays[f"run{index}_{field}"] = value
    return arrays


def main(argv: list[str]) -> int:
    """Read the spec (JSON text), run it, write the arrays to an ``.npz`` file."""
    spec_text, out_path = argv
    np.savez(Path(out_path), **run(json.loads(spec_text)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
