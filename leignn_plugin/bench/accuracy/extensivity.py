"""The paper's extensivity check: the energy of an n x 1 x 1 supercell is n times the cell's energy.

A model whose energy is a sum of atomic terms over a periodic graph passes it to rounding, whatever
its training; a global readout that sums rather than averages over the structure, a per-structure
energy offset, or a neighbour cap that breaks ties differently in the larger cell does not.

On the demo slabs the cells are bulk fcc metals of the training data (EMT energies of bulk metals are
close to zero, so the deviation is also given per atom); on other data they are the first test
structures. Non-periodic structures are repeated as n copies far enough apart not to interact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

REPEATS = (1, 2, 3, 4)
COPY_GAP = 2.0  # Å beyond the cutoff between the copies of a non-periodic structure


def demo_bulk_cells(metals: list[str]) -> list[Atoms]:
    """Bulk fcc cells of the demo slabs' metals (at their reference lattice constants): a cubic cell of
    the first, a one-atom cell of the second (smaller than the cutoff, so each atom sees its own
    images) and a rattled cubic cell mixing the two (no symmetric ties for a neighbour cap to break)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    first, second = metals[0], metals[1 % len(metals)]
    a1, a2 = (float(reference_states[atomic_numbers[m]]["a"]) for m in (first, second))
    cubic = bulk(first, "fcc", a=a1, cubic=True)
    cubic.info["label"] = f"{first} fcc, 4-atom cubic cell"
    primitive = bulk(second, "fcc", a=a2)
    primitive.info["label"] = f"{second} fcc, 1-atom primitive cell"
    mixed = bulk(first, "fcc", a=(a1 + a2) / 2, cubic=True)
    mixed.numbers[[1, 2]] = atomic_numbers[second]
    mixed.rattle(0.05, seed=1)
    mixed.info["label"] = f"{mixed.get_chemical_formula()} fcc, 4-atom cubic cell, rattled 0.05 Å"
    return [cubic, primitive, mixed]


def frames_as_cells(lmdb_dir: Path, count: int = 3) -> list[Atoms]:
    """The first ``count`` structures of an LMDB as ASE atoms (positions, cell, periodicity, tags)."""
    from leignn_plugin.data.safe_records import open_lmdb_dataset

    dataset = open_lmdb_dataset(lmdb_dir)
    cells = []
    for i in range(min(count, len(dataset))):
        d = dataset[i]
        pbc = d.pbc.view(-1).tolist() if "pbc" in d else [True] * 3
        atoms = Atoms(numbers=d.atomic_numbers.long().numpy(), positions=d.pos.numpy(),
                      cell=d.cell.view(3, 3).numpy(), pbc=pbc, tags=d.tags.numpy() if "tags" in d else None)
        atoms.info["label"] = f"test frame {int(d.sid)}_{int(d.fid)}: {atoms.get_chemical_formula()}"
        cells.append(atoms)
    return cells


def supercell(atoms: Atoms, n: int, cutoff: float) -> Atoms:
    """``atoms`` repeated n x 1 x 1 (periodic along all axes) or as n distant copies (otherwise)."""
    if all(atoms.pbc):
        return atoms.repeat((n, 1, 1))
    extent = float(np.ptp(atoms.positions[:, 0])) if len(atoms) else 0.0
    copies = Atoms(pbc=atoms.pbc, cell=atoms.cell)
    for k in range(n):
        shifted = atoms.copy()
        shifted.positions[:, 0] += k * (extent + cutoff + COPY_GAP)
        copies += shifted
    return copies


@dataclass
class CellCheck:
    """Energies of one cell's supercells and how far they are from n times the cell's energy."""

    label: str
    natoms: int
    energies: list[float]

    def deviations(self) -> list[float]:
        """|E(n) - n E(1)| for each n (eV)."""
        return [abs(e - n * self.energies[0]) for n, e in zip(REPEATS, self.energies)]

    @property
    def max_relative(self) -> float:
        """max over n of |E(n) - n E(1)| / |n E(1)| (inf when E(1) is exactly zero and E(n) is not)."""
        scale = abs(self.energies[0])
        worst = max(d / n for n, d in zip(REPEATS, self.deviations()))
        return worst / scale if scale > 0 else (0.0 if worst == 0 else float("inf"))

    @property
    def max_per_atom(self) -> float:
        """max over n of |E(n) - n E(1)| / (n x atoms of the cell) (eV/atom)."""
        return max(d / (n * self.natoms) for n, d in zip(REPEATS, self.deviations()))

    def to_dict(self) -> dict:
        return {"cell": self.label, "natoms": self.natoms, "repeats": list(REPEATS), "energies": self.energies,
                "max_relative_deviation": self.max_relative, "max_deviation_per_atom": self.max_per_atom}


def summary(checks: list[CellCheck]) -> dict:
    """The worst relative and per-atom deviations over all cells."""
    return {"max_relative_deviation": max((c.max_relative for c in checks), default=None),
            "max_deviation_per_atom": max((c.max_per_atom for c in checks), default=None),
            "cells": [c.to_dict() for c in checks]}


def leignn_checks(checkpoint: Path, cells: list[Atoms]) -> list[CellCheck]:
    """Supercell energies from the project's calculator (``LEIGNNCalculator``, the checkpoint reader
    ``load_potential``), as a user of a trained LEIGNN would compute them."""
    from leignn_plugin.md.calculator import LEIGNNCalculator

    calc = LEIGNNCalculator(checkpoint, skin=0.0)
    cutoff = float(calc.potential.backbone.cutoff)
    checks = []
    for cell in cells:
        energies = []
        for n in REPEATS:
            atoms = supercell(cell, n, cutoff)
            atoms.calc = calc
            energies.append(float(atoms.get_potential_energy()))
        checks.append(CellCheck(cell.info.get("label", cell.get_chemical_formula()), len(cell), energies))
    return checks
