"""Small reference structures (periodic bulk, slab + adsorbate, molecule) as fairchem batches."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.constraints import FixAtoms
from fairchem.core.datasets.lmdb_dataset import data_list_collater
from fairchem.core.preprocessing import AtomsToGraphs


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
    """Convert ASE structures with fairchem's AtomsToGraphs and collate them into one batch.

    AtomsToGraphs stores float32 positions; they are replaced by the exact ones in ``dtype`` so
    that float64 checks see float64 geometry.
    """
    a2g = AtomsToGraphs(r_edges=False, r_energy=False, r_forces=False, r_fixed=True, r_pbc=True)
    data_list = []
    for k, atoms in enumerate(atoms_list):
        data = a2g.convert(atoms)
        data.sid = k
        data.tags = torch.as_tensor(atoms.get_tags(), dtype=torch.long)
        data.pos = torch.tensor(atoms.get_positions(), dtype=dtype)  # [n, 3]
        data.cell = torch.tensor(atoms.cell.array, dtype=dtype).view(1, 3, 3)  # [1, 3, 3]
        data_list.append(data)
    return data_list_collater(data_list, otf_graph=True)
