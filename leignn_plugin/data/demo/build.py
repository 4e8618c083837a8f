"""Build the embedded demo data: OC20-style S2EF and IS2RE sets and an MD17-style molecule set.

Layout under the output directory (fixed; configs are written against it)::

    oc20_s2ef/{train,val,test}/   S2EF frames (relaxations and rattled copies), OC20 convention (y, force), EMT labels
    oc20_is2re/{train,val}/       initial structures with y_init, y_relaxed, pos_relaxed
    molecules/{train,val,test}/   non-periodic molecule frames, fairchem convention (energy, forces)
    manifest.json                 counts, elements, seed, calculators, versions

With ``output=OutputFormat.ASELMDB`` the same splits are ``.aselmdb`` datasets for fairchem 2.x: energy
and forces in each row's calculator, ids and the IS2RE fields in its ``data``.

Slab systems are split by system (80/10/10): S2EF splits hold whole relaxation trajectories and
their rattled frames, the IS2RE train split holds the S2EF training systems and the IS2RE val split all held-out systems
(non-converged relaxations are left out of IS2RE).  Molecule frames are split at random.  The
same seed gives byte-identical LMDB files (on the same software stack); ``.aselmdb`` rows also carry
ASE's creation time and a random ``unique_id``.

Labelling cost: every BFGS step and every rattled frame is an EMT call and every MD step a GFN2-xTB
call (about 1 ms for these molecules), so the MD is driven by GFN2 itself rather than by a cheaper
surrogate.  The molecule MD runs in a child process alongside the slab relaxations.

``data_version`` in the manifest says which recipe made the frames: 1 relaxation frames only, 2 with
the rattled frames (the ``small`` size has none, so its data are those of version 1).
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ase.data import chemical_symbols
from tqdm import tqdm

from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.demo.molecules import MoleculeRun, MoleculeSampling
from leignn_plugin.data.demo.slabs import Relaxation, relax_all
from leignn_plugin.data.demo.spec import DEMO_SIZES, DemoSpec
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.pipelines import write_frames
from leignn_plugin.data.shards import OutputFormat, WriteSummary
from leignn_plugin.data.splits import fraction_split
from leignn_plugin.data.staging import check_output_free, staged_output

LAYOUT_VERSION = 1
DATA_VERSION = 2

IS2RE_FIELDS = {"initial energy": "y_init", "relaxed energy": "y_relaxed", "relaxed positions": "pos_relaxed"}


def build_demo(
    out: Path,
    *,
    seed: int = 0,
    size: str = "default",
    output: OutputFormat = OutputFormat.LMDB,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, object]:
    """Generate the demo datasets into ``out`` (atomically) and return the manifest.

    Args:
        out: Output directory.
        seed: Seed of every random choice (sites, displacements, velocities, thermostat, splits).
        size: A key of :data:`DEMO_SIZES` (``default`` or ``small``).
        output: LMDB (fairchem 1.x, what the demo configs read) or ``.aselmdb`` (fairchem 2.x).
        overwrite: Replace an existing ``out`` once the new one is complete.
        progress: Show progress bars.
    """
    if size not in DEMO_SIZES:
        raise DataError(f"unknown demo size {size!r} (choose from {', '.join(DEMO_SIZES)})")
    spec = DEMO_SIZES[size]
    check_output_free(out, overwrite=overwrite)
    started = time.perf_counter()
    sampling = MoleculeSampling(spec.molecules, seed)
    try:
        relaxations = _relax(spec, seed, progress)
        molecule_runs = sampling.collect()
    finally:
        sampling.close()
    writer = _SplitWriter(output, progress)
    with staged_output(out, overwrite=overwrite) as stage:
        manifest = {
            "name": "leignn-plugin demo data",
            "layout_version": LAYOUT_VERSION,
            "data_version": DATA_VERSION,
            "seed": seed,
            "size": spec.name,
            "format": output.value,
            "software": _software_versions(),
            "datasets": {
                "oc20_s2ef": _write_s2ef(stage / "oc20_s2ef", relaxations, spec, seed, writer),
                "oc20_is2re": _write_is2re(stage / "oc20_is2re", relaxations, spec, seed, writer),
                "molecules": _write_molecules(stage / "molecules", molecule_runs, spec, seed, writer),
            },
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    manifest["build_seconds"] = round(time.perf_counter() - started, 2)
    return manifest


def _relax(spec: DemoSpec, seed: int, progress: bool) -> list[Relaxation]:
    """All slab relaxations, with a progress bar."""
    total = len(spec.slabs.metals) * len(spec.slabs.facets) * len(spec.slabs.adsorbates)
    total *= spec.slabs.sites_per_combination
    with tqdm(total=total, desc="EMT relaxations", unit=" systems", disable=not progress, leave=False) as bar:
        return relax_all(spec.slabs, seed, on_done=bar.update)


def _system_splits(relaxations: list[Relaxation], spec: DemoSpec, seed: int) -> dict[str, list[Relaxation]]:
    """Split systems (not frames) 80/10/10 so held-out trajectories are unseen in training."""
    fractions = [("train", 0.0), ("val", spec.val_fraction), ("test", spec.test_fraction)]
    indices = fraction_split(len(relaxations), fractions, seed)
    return {name: [relaxations[i] for i in chosen] for name, chosen in indices.items()}


class _SplitWriter:
    """Writes each split in the chosen format; LMDB field names follow the dataset's convention."""

    def __init__(self, output: OutputFormat, progress: bool) -> None:
        self.output = output
        self.progress = progress

    def write(
        self, frames: list[Frame], directory: Path, convention: Convention, with_labels: bool = True
    ) -> WriteSummary:
        return write_frames(
            frames,
            directory,
            output=self.output,
            convention=convention,
            with_labels=with_labels,
            total=len(frames),
            desc=f"{directory.parent.name}/{directory.name}",
            progress=self.progress,
        )

    def fields(self, convention: Convention, labels: bool = True) -> dict[str, object]:
        """The manifest's ``convention`` (LMDB only) and ``fields`` entries of a dataset."""
        if self.output is OutputFormat.LMDB:
            names = {"energy": convention.energy_key, "forces": convention.forces_key} if labels else IS2RE_FIELDS
            return {"convention": convention.value, "fields": names}
        if labels:
            names = {"energy": "calculator energy", "forces": "calculator forces"}
        else:
            names = {key: f"data {name}" for key, name in IS2RE_FIELDS.items()}
        return {"fields": {**names, "ids": "data sid, fid"}}


def _split_entry(summary: WriteSummary) -> dict[str, object]:
    return {"samples": summary.samples, "atoms": summary.atoms}


def _elements(summaries: list[WriteSummary]) -> list[str]:
    numbers = sorted({z for summary in summaries for z in summary.elements})
    return [chemical_symbols[z] for z in numbers]


def _write_s2ef(
    root: Path, relaxations: list[Relaxation], spec: DemoSpec, seed: int, writer: _SplitWriter
) -> dict[str, object]:
    summaries = {
        name: writer.write([f for r in systems for f in (*r.frames, *r.rattled)], root / name, Convention.OC20)
        for name, systems in _system_splits(relaxations, spec, seed).items()
    }
    slabs = spec.slabs
    return {
        "task": "S2EF",
        **writer.fields(Convention.OC20),
        "calculator": "ase.calculators.emt.EMT",
        "energy": "total EMT energy (eV); forces in eV/Å, including those on fixed atoms",
        "sampling": (
            f"BFGS relaxations (fmax {slabs.fmax} eV/Å, at most {slabs.max_steps} steps) from free atoms "
            f"displaced by N(0, {slabs.rattle} Å); every {slabs.frame_stride}th step and the last kept"
        ),
        "systems": len(relaxations),
        "rattled": {
            "frames_per_system": slabs.rattled_per_system,
            "sigma_range_A": list(slabs.rattled_sigma),
            "sampling": (
                "frames spread evenly along each relaxation, free atoms displaced by N(0, sigma) with sigma "
                "drawn uniformly from the range, EMT-labelled"
            ),
            "sids": f"{len(relaxations)} + sid of the relaxed system",
            "frames": sum(len(r.rattled) for r in relaxations),
        },
        "metals": list(slabs.metals),
        "facets": [f"fcc({facet})" for facet in slabs.facets],
        "adsorbates": list(slabs.adsorbates),
        "tags": {"0": "subsurface (fixed)", "1": "surface", "2": "adsorbate"},
        "elements": _elements(list(summaries.values())),
        "splits": {name: _split_entry(summary) for name, summary in summaries.items()},
    }


def _write_is2re(
    root: Path, relaxations: list[Relaxation], spec: DemoSpec, seed: int, writer: _SplitWriter
) -> dict[str, object]:
    by_split = _system_splits(relaxations, spec, seed)
    groups = {"train": by_split["train"], "val": by_split["val"] + by_split["test"]}
    summaries = {
        name: writer.write(
            [r.initial for r in sorted(systems, key=lambda r: r.sid) if r.converged],
            root / name,
            Convention.OC20,
            with_labels=False,
        )
        for name, systems in groups.items()
    }
    return {
        "task": "IS2RE/IS2RS",
        **writer.fields(Convention.OC20, labels=False),
        "calculator": "ase.calculators.emt.EMT",
        "energy": "total EMT energies (eV) of the initial and BFGS-relaxed structures",
        "not_converged": sorted(r.sid for r in relaxations if not r.converged),
        "elements": _elements(list(summaries.values())),
        "splits": {name: _split_entry(summary) for name, summary in summaries.items()},
    }


def _write_molecules(
    root: Path, runs: list[MoleculeRun], spec: DemoSpec, seed: int, writer: _SplitWriter
) -> dict[str, object]:
    frames = [frame for run in runs for frame in run.frames]
    fractions = [("train", 0.0), ("val", spec.val_fraction), ("test", spec.test_fraction)]
    indices = fraction_split(len(frames), fractions, seed + 1)
    summaries = {
        name: writer.write([frames[i] for i in chosen], root / name, Convention.FAIRCHEM)
        for name, chosen in indices.items()
    }
    molecules = spec.molecules
    return {
        "task": "S2EF (MD17-style)",
        **writer.fields(Convention.FAIRCHEM),
        "calculator": "GFN2-xTB (tblite.ase.TBLite)",
        "energy": "total GFN2-xTB energy (eV); forces in eV/Å; non-periodic",
        "sampling": (
            f"Langevin MD ({molecules.timestep_fs} fs step, friction {molecules.friction_per_fs}/fs) driven by "
            f"GFN2-xTB; {molecules.equilibration_steps} steps discarded, then every {molecules.stride}th step kept"
        ),
        "trajectories": [
            {
                "sid": run.sid,
                "molecule": run.molecule,
                "temperature_K": run.temperature,
                "frames": len(run.frames),
            }
            for run in runs
        ],
        "elements": _elements(list(summaries.values())),
        "splits": {name: _split_entry(summary) for name, summary in summaries.items()},
    }


def _software_versions() -> dict[str, str]:
    """Versions that determine the generated numbers."""
    versions = {}
    for package in ("leignn-plugin", "fairchem-core", "ase", "tblite", "numpy", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions
