"""A fixed, seeded batch of OC20-like structures (metal slab + small adsorbate, periodic cells).

Every model in a benchmark sees the same batch, built once per process.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import add_adsorbate, fcc100, fcc111, molecule
from ase.constraints import FixAtoms

from leignn_plugin.testing.structures import to_batch

METALS = ("Pt", "Cu", "Ag", "Au", "Ni", "Pd", "Rh", "Ir")
ADSORBATES = ("CO", "OH", "CH3", "NH3", "H2O", "CH3OH", "NO", "H")
SITES = {"fcc111": ("ontop", "fcc", "hcp"), "fcc100": ("ontop", "hollow", "bridge")}


def oc20_like_slab(index: int, rng: np.random.Generator, size: tuple[int, int, int] = (4, 4, 4),
                   vacuum: float = 8.0) -> Atoms:
    """One slab + adsorbate with OC20 tags (0 sub-surface, 1 surface, 2 adsorbate), bottom half fixed."""
    metal = METALS[index % len(METALS)]
    facet = ("fcc111", "fcc100")[index % 2]
    build = fcc111 if facet == "fcc111" else fcc100
    slab = build(metal, size=size, vacuum=vacuum, periodic=True)
    z = slab.positions[:, 2].copy()
    n_slab = len(slab)
    ads_name = ADSORBATES[int(rng.integers(len(ADSORBATES)))]
    ads = Atoms("H") if ads_name == "H" else molecule(ads_name)
    site = SITES[facet][int(rng.integers(len(SITES[facet])))]
    add_adsorbate(slab, ads, height=1.8 + 0.3 * float(rng.random()), position=site)
    slab.center(vacuum=vacuum, axis=2)
    slab.pbc = True
    tags = np.full(len(slab), 2, dtype=int)
    layers = np.unique(np.round(z, 2))
    tags[:n_slab] = np.where(z >= layers[-1] - 0.1, 1, 0)
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(z < np.median(z))))
    slab.positions += rng.normal(0.0, 0.05, size=slab.positions.shape)
    return slab


def oc20_like_structures(num_structures: int = 8, seed: int = 0,
                         size: tuple[int, int, int] = (4, 4, 4)) -> list[Atoms]:
    """``num_structures`` seeded slabs (64 metal atoms each with the default size)."""
    if num_structures < 1:
        raise ValueError(f"num_structures must be at least 1, got {num_structures}")
    rng = np.random.default_rng(seed)
    return [oc20_like_slab(k, rng, size) for k in range(num_structures)]


def oc20_like_batch(num_structures: int = 8, seed: int = 0, size: tuple[int, int, int] = (4, 4, 4),
                    dtype: torch.dtype = torch.float32):
    """The structures collated into one fairchem batch (pos, cell, natoms, atomic_numbers, tags, fixed)."""
    return to_batch(oc20_like_structures(num_structures, seed, size), dtype)
