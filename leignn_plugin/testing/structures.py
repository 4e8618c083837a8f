"""Small reference structures (periodic bulk, slab + adsorbate, molecule) as ASE Atoms, as the core's
own input (no host), and as a batch of whichever fairchem host is installed (through ``tools_host``)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.constraints import FixAtoms

from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.graph import neighbor_graph
from leignn_plugin.tools_host import installed


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


def core_graph(atoms_list: list[Atoms], dtype: torch.dtype, cutoff: float, max_neighbors: int) -> AtomGraph:
    """``atoms_list`` as the core's input, searched by the project's one neighbour search: no host."""
    pos = torch.tensor(np.concatenate([a.positions for a in atoms_list]), dtype=dtype)  # [N, 3]
    cell = torch.tensor(np.stack([a.cell.complete().array if a.pbc.any() else np.zeros((3, 3))
                                  for a in atoms_list]), dtype=dtype)  # [B, 3, 3]
    pbc = torch.tensor(np.stack([a.pbc for a in atoms_list]))  # [B, 3]
    natoms = torch.tensor([len(a) for a in atoms_list])  # [B]
    graph = neighbor_graph(pos, cell, pbc, natoms, cutoff, max_neighbors)
    return AtomGraph(numbers=torch.tensor(np.concatenate([a.numbers for a in atoms_list])), pos=pos, cell=cell,
                     pbc=pbc, batch=torch.repeat_interleave(torch.arange(len(atoms_list)), natoms),
                     edge_index=graph.edge_index, cell_offsets=graph.cell_offsets)


def to_batch(atoms_list: list[Atoms], dtype: torch.dtype = torch.float32):
    """``atoms_list`` as one batch of the installed host (its registered ``atoms_batch``), with exact
    positions and cells in ``dtype``."""
    return installed().atoms_batch(atoms_list, dtype)
