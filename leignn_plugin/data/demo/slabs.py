"""OC20-style adsorbate-on-slab relaxations with ASE's EMT, for S2EF and IS2RE/IS2RS data.

Each system is an fcc(111) or fcc(100) slab of one metal with one adsorbate on a chosen site,
tagged as OC20 does (0 subsurface, 1 surface, 2 adsorbate) with the subsurface layers fixed.
Free atoms get a small random displacement from a seeded generator, then BFGS relaxes the system;
frames along that trajectory are S2EF samples, and the start/end points give the IS2RE record
(``y_init``, ``y_relaxed``, ``pos_relaxed``).  Energies are total EMT energies in eV.

Each system also gets a few *rattled* S2EF frames (as OC20 has rattled data beside its relaxations):
frames along the relaxation with the free atoms displaced at random, labelled by EMT. They carry the
large forces (several eV/Å) that relaxations from near-minimum starts reach only in their first steps.
They form their own trajectory: sid ``number of systems + sid`` of the relaxed system, fid 0, 1, ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import product

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.geometry import wrap_positions
from ase.optimize import BFGS

from leignn_plugin.data.demo.spec import SlabSpec
from leignn_plugin.data.frame import Frame

SLAB_BUILDERS: dict[str, Callable[..., Atoms]] = {"111": fcc111, "100": fcc100}

ADSORBATE_GEOMETRY: dict[str, list[tuple[float, float, float]]] = {
    "H": [(0.0, 0.0, 0.0)],
    "C": [(0.0, 0.0, 0.0)],
    "N": [(0.0, 0.0, 0.0)],
    "O": [(0.0, 0.0, 0.0)],
    "OH": [(0.0, 0.0, 0.0), (0.0, 0.0, 0.97)],
    "CO": [(0.0, 0.0, 0.0), (0.0, 0.0, 1.15)],
}
"""Adsorbate geometries; the first atom binds to the surface."""

ADSORPTION_HEIGHT: dict[str, float] = {"H": 1.7, "C": 1.35, "N": 1.35, "O": 1.5, "OH": 1.6, "CO": 1.4}
"""Initial height (Å) above a hollow or bridge site, near EMT's relaxed heights; on-top sites
start :data:`ONTOP_EXTRA_HEIGHT` higher.  A random offset is added per system."""

ONTOP_EXTRA_HEIGHT = 0.4
HEIGHT_JITTER = (-0.1, 0.3)

TAG_SUBSURFACE, TAG_SURFACE, TAG_ADSORBATE = 0, 1, 2


@dataclass(frozen=True)
class Relaxation:
    """One relaxed system: its S2EF frames and its IS2RE record (initial structure + extras)."""

    sid: int
    metal: str
    facet: str
    adsorbate: str
    site: str
    frames: list[Frame]
    initial: Frame
    converged: bool
    steps: int
    rattled: tuple[Frame, ...] = ()


def enumerate_systems(spec: SlabSpec, seed: int) -> list[tuple[str, str, str, str]]:
    """(metal, facet, adsorbate, site) for every system, with sites drawn per combination."""
    systems = []
    combinations = product(spec.metals, spec.facets, spec.adsorbates)
    for index, (metal, facet, adsorbate) in enumerate(combinations):
        sites = sorted(build_slab(metal, facet, spec).info["adsorbate_info"]["sites"])
        rng = np.random.default_rng((seed, 0, index))
        chosen = rng.choice(len(sites), size=min(spec.sites_per_combination, len(sites)), replace=False)
        systems.extend((metal, facet, adsorbate, sites[i]) for i in sorted(chosen.tolist()))
    return systems


def build_slab(metal: str, facet: str, spec: SlabSpec) -> Atoms:
    """A clean periodic slab with OC20 tags and the bottom layers fixed."""
    slab = SLAB_BUILDERS[facet](metal, size=spec.size, vacuum=spec.vacuum, periodic=True)
    layers = slab.get_tags()
    surface = layers <= spec.size[2] - spec.fixed_layers
    slab.set_tags(np.where(surface, TAG_SURFACE, TAG_SUBSURFACE))
    slab.set_constraint(FixAtoms(mask=~surface))
    return slab


def initial_structure(
    metal: str, facet: str, adsorbate: str, site: str, spec: SlabSpec, rng: np.random.Generator
) -> Atoms:
    """Slab plus adsorbate at a jittered height and position, free atoms slightly displaced."""
    slab = build_slab(metal, facet, spec)
    molecule = Atoms(adsorbate, positions=ADSORBATE_GEOMETRY[adsorbate])
    height = ADSORPTION_HEIGHT[adsorbate] + (ONTOP_EXTRA_HEIGHT if site == "ontop" else 0.0)
    height += rng.uniform(*HEIGHT_JITTER)
    add_adsorbate(slab, molecule, height, position=site, offset=None, mol_index=0)
    tags = slab.get_tags()
    tags[-len(molecule) :] = TAG_ADSORBATE
    slab.set_tags(tags)
    free = tags != TAG_SUBSURFACE
    displacement = rng.normal(0.0, spec.rattle, size=(len(slab), 3))
    displacement[-len(molecule) :, :2] += rng.normal(0.0, 0.1, size=(len(molecule), 2))
    positions = slab.positions + displacement * free[:, None]
    slab.set_positions(wrap_positions(positions, slab.cell, pbc=slab.pbc, eps=0))
    return slab


def relax_system(sid: int, system: tuple[str, str, str, str], spec: SlabSpec, seed: int) -> Relaxation:
    """Relax one system with BFGS on EMT and keep frames along the way."""
    metal, facet, adsorbate, site = system
    rng = np.random.default_rng((seed, 1, sid))
    atoms = initial_structure(metal, facet, adsorbate, site, spec, rng)
    start = atoms.positions.copy()
    atoms.calc = EMT()
    label = f"demo slab {sid} ({adsorbate} on {metal}({facet}) {site})"
    steps: list[tuple[np.ndarray, float, np.ndarray]] = []
    converged = False
    optimizer = BFGS(atoms, logfile=None, maxstep=0.2)
    for step_converged in optimizer.irun(fmax=spec.fmax, steps=spec.max_steps):
        converged = bool(step_converged)
        steps.append(
            (
                atoms.positions.copy(),
                float(atoms.get_potential_energy()),
                atoms.get_forces(apply_constraint=False),
            )
        )
    kept = sorted(set(range(0, len(steps), spec.frame_stride)) | {len(steps) - 1})
    frames = [
        _frame(atoms, steps[i][0], steps[i][1], steps[i][2], sid, i, f"{label}: frame {i}") for i in kept
    ]
    initial = Frame(
        atoms=_geometry(atoms, start),
        energy=None,
        forces=None,
        stress=None,
        sid=sid,
        fid=0,
        origin=f"{label}: initial structure",
        extras={
            "y_init": steps[0][1],
            "y_relaxed": steps[-1][1],
            "pos_relaxed": steps[-1][0],
        },
    )
    return Relaxation(sid, metal, facet, adsorbate, site, frames, initial, bool(converged), len(steps) - 1)


def _geometry(template: Atoms, positions: np.ndarray) -> Atoms:
    """A calculator-free copy of ``template`` at ``positions`` (tags, cell, constraints kept)."""
    atoms = template.copy()
    atoms.calc = None
    atoms.set_positions(positions, apply_constraint=False)
    return atoms


def _frame(
    template: Atoms, positions: np.ndarray, energy: float, forces: np.ndarray, sid: int, fid: int, origin: str
) -> Frame:
    return Frame(_geometry(template, positions), energy, forces, None, sid, fid, origin)


def rattled_frames(relaxation: Relaxation, sid: int, spec: SlabSpec, seed: int) -> tuple[Frame, ...]:
    """``spec.rattled_per_system`` frames spread evenly along ``relaxation`` (its first frame included),
    free atoms displaced by N(0, sigma) Å with sigma drawn from ``spec.rattled_sigma``, EMT-labelled."""
    count = spec.rattled_per_system
    if count <= 0:
        return ()
    rng = np.random.default_rng((seed, 3, relaxation.sid))
    chosen = np.linspace(0, len(relaxation.frames) - 1, count).round().astype(int)  # [count]
    frames = []
    for fid, index in enumerate(chosen.tolist()):
        base = relaxation.frames[index]
        atoms = _geometry(base.atoms, base.atoms.positions)
        free = atoms.get_tags() != TAG_SUBSURFACE
        sigma = rng.uniform(*spec.rattled_sigma)
        displacement = rng.normal(0.0, sigma, size=(len(atoms), 3)) * free[:, None]  # [N, 3]
        positions = wrap_positions(atoms.positions + displacement, atoms.cell, pbc=atoms.pbc, eps=0)
        atoms.set_positions(positions, apply_constraint=False)
        atoms.calc = EMT()
        energy, forces = float(atoms.get_potential_energy()), atoms.get_forces(apply_constraint=False)
        origin = f"demo slab {relaxation.sid} rattled: frame {base.fid} with sigma {sigma:.3f} Å"
        frames.append(_frame(atoms, positions, energy, forces, sid, fid, origin))
    return tuple(frames)


def relax_all(spec: SlabSpec, seed: int, *, on_done: Callable[[], None] | None = None) -> list[Relaxation]:
    """Relax every system of the spec, in ``sid`` order, each with its rattled frames."""
    systems = enumerate_systems(spec, seed)
    relaxations = []
    for sid, system in enumerate(systems):
        relaxation = relax_system(sid, system, spec, seed)
        relaxations.append(replace(relaxation, rattled=rattled_frames(relaxation, len(systems) + sid, spec, seed)))
        if on_done is not None:
            on_done()
    return relaxations
