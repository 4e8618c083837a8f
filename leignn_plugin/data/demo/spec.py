"""Sizes and physical settings of the embedded demo datasets.

``default`` is the documented demo (a few thousand frames, built in about a minute on two cores);
``small`` is a reduced variant for quick tests with the same layout (and no rattled frames: its
bytes, which many tests train on, are those of the first data version).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlabSpec:
    """OC20-style adsorbate+slab systems relaxed with ASE's EMT.

    Attributes:
        metals: fcc metals (all have EMT parameters).
        facets: ``"111"`` and/or ``"100"``.
        adsorbates: Adsorbate formulas; the first atom binds to the surface.
        sites_per_combination: Distinct adsorption sites per (metal, facet, adsorbate).
        size: Slab repetitions (a, b, layers).
        fixed_layers: Bottom layers held fixed (tag 0, ``fixed = 1``); the rest are tag 1.
        vacuum: Vacuum on each side of the slab (Å); the cell is periodic in all directions.
        rattle: Standard deviation (Å) of the random displacement of free atoms before relaxing.
        fmax: BFGS convergence threshold (eV/Å).
        max_steps: BFGS step limit.
        frame_stride: Keep every n-th relaxation step as an S2EF frame (the last one always).
        rattled_per_system: Extra S2EF frames per system: frames along its relaxation with the free
            atoms displaced by N(0, sigma) and labelled by EMT. Relaxations from near-minimum starts
            carry forces above 1 eV/Å only in their first steps; these frames carry many.
        rattled_sigma: Range (Å) of sigma, drawn uniformly per rattled frame.
    """

    metals: tuple[str, ...] = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt")
    facets: tuple[str, ...] = ("111", "100")
    adsorbates: tuple[str, ...] = ("H", "C", "N", "O", "OH", "CO")
    sites_per_combination: int = 2
    size: tuple[int, int, int] = (2, 2, 4)
    fixed_layers: int = 2
    vacuum: float = 7.0
    rattle: float = 0.05
    fmax: float = 0.05
    max_steps: int = 150
    frame_stride: int = 2
    rattled_per_system: int = 4
    rattled_sigma: tuple[float, float] = (0.03, 0.15)


@dataclass(frozen=True)
class MoleculeSpec:
    """MD17-style Langevin MD of small molecules with GFN2-xTB forces.

    Attributes:
        molecules: Names understood by ``ase.build.molecule``.
        temperatures: Thermostat temperatures (K); one trajectory per molecule and temperature.
        equilibration_steps: MD steps discarded at the start of each trajectory.
        frames_per_run: Frames kept per trajectory.
        stride: MD steps between kept frames.
        timestep_fs: MD time step (fs).
        friction_per_fs: Langevin friction (1/fs).
    """

    molecules: tuple[str, ...] = ("CH3CH2OH", "CH3CHO", "C6H6", "CH4", "H2O")
    temperatures: tuple[float, ...] = (300.0, 500.0, 800.0)
    equilibration_steps: int = 100
    frames_per_run: int = 100
    stride: int = 5
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01


@dataclass(frozen=True)
class DemoSpec:
    """A complete demo build: slabs, molecules and the split fractions."""

    name: str
    slabs: SlabSpec
    molecules: MoleculeSpec
    val_fraction: float = 0.1
    test_fraction: float = 0.1


DEMO_SIZES: dict[str, DemoSpec] = {
    "default": DemoSpec(name="default", slabs=SlabSpec(), molecules=MoleculeSpec()),
    "small": DemoSpec(
        name="small",
        slabs=SlabSpec(
            metals=("Cu", "Pt"), adsorbates=("H", "O", "CO"), sites_per_combination=1, rattled_per_system=0
        ),
        molecules=MoleculeSpec(
            molecules=("CH4", "H2O"), temperatures=(300.0, 800.0), equilibration_steps=20, frames_per_run=15
        ),
    ),
}
