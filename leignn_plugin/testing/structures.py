"""Small reference structures (periodic bulk, slab + adsorbate, molecule) as ASE Atoms, and as a batch
of whichever fairchem host is installed."""

from __future__ import annotations

import importlib

import numpy as np
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.constraints import FixAtoms

from leignn_plugin import HOST_FAIRCHEM


def rattled(atoms: Atoms, amplitude: float, seed: int) -> Atoms:
    """A copy of ``atoms`` with positions displaced by a seeded uniform noise."""
    out = atoms.copy()
    rng = np.random.default_rng(seed)
    out.positions += rng.uniform(-amplitude, amplitude, size=out.positions.shape)
    return out


def bulk_cell(seed: int = 0) -> Atoms:
    """A rattled 8-atom periodic Cu-Pd cell (non-orthogonal shape, all axes periodic)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
    atoms.numbers[::3] = 46
    atoms.set_cell(atoms.cell.array + np.array([[0, 0.3, 0], [0.2, 0, 0], [0, 0, 0]]), scale_atoms=True)
    return rattled(atoms, 0.15, seed)


def slab_with_adsorbate(seed: int = 1) -> Atoms:
    """An OC20-like Pt(111) slab with CO, fixed bottom layer and OC20 tags."""
    slab = fcc111("Pt", size=(2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, molecule("CO"), 1.9, "ontop")
    tags = np.zeros(len(slab), dtype=int)
    z = slab.positions[:12, 2]
    tags[:12] = np.where(z > z.max() - 0.5, 1, 0)
    tags[12:] = 2
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(indices=[i for i in range(12) if z[i] < z.min() + 0.5]))
    return rattled(slab, 0.05, seed)


def organic_molecule(seed: int = 2) -> Atoms:
    """A rattled ethanol molecule, non-periodic."""
    atoms = molecule("CH3CH2OH")
    atoms.pbc = False
    return rattled(atoms, 0.05, seed)


def to_batch(atoms_list: list[Atoms], dtype: torch.dtype = torch.float32):
    """``atoms_list`` as one batch of the installed host (``atoms_batch`` of ``leignn_plugin.fairchem1.harness``
    or ``leignn_plugin.fairchem2.harness``), with exact positions and cells in ``dtype``."""
    host = importlib.import_module(f"leignn_plugin.fairchem{HOST_FAIRCHEM}.harness")
    return host.atoms_batch(atoms_list, dtype)
