"""LEIGNN in fairchem 2.x's calculate runners: relaxations, adsorption energies, MD, NVE MD, elastic
tensors and phonons, run by ``fairchem -c configs/fairchem2/calculate/<runner>.yaml``.

fairchem's runners take an ASE calculator and their input data from the config, both built by Hydra.
The calculator here is fairchem's own ``FAIRChemCalculator`` on the project's safe predict unit
(:func:`leignn_plugin.fairchem2.checkpoint.load_predict_unit`: the checkpoint is read weights-only and
its stored configs checked before fairchem builds anything from it), which fairchem's
``FAIRChemCalculator.from_model_checkpoint`` would not do. The input builders turn files into what a
runner expects (a structure, (structure, temperature) pairs, phonopy files), and
:func:`write_demo_inputs` makes small inputs for every runner with ASE's EMT as the reference
calculator (``leignn-fairchem2 calculate-inputs OUT``), so each config runs on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from leignn_plugin.data.aselmdb_writer import write_aselmdb_shards
from leignn_plugin.data.demo.slabs import ADSORBATE_GEOMETRY, build_slab, initial_structure
from leignn_plugin.data.demo.spec import SlabSpec
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.staging import staged_output
from leignn_plugin.errors import UsageError

DEMO_ADSORBATES = ("O", "H", "OH")
"""Adsorbates of the demo adsorption set, on Cu(111) (elements the demo models were trained on)."""


def fairchem_calculator(checkpoint: str | Path, task_name: str | None = None, device: str = "cpu",
                        trust_checkpoint: bool = False):
    """fairchem's ``FAIRChemCalculator`` on the LEIGNN checkpoint (checked and loaded safely); the task
    (dataset) name defaults to the checkpoint's only one."""
    from fairchem.core import FAIRChemCalculator

    from leignn_plugin.fairchem2.checkpoint import load_predict_unit

    unit = load_predict_unit(checkpoint, device=device, trust_checkpoint=trust_checkpoint)
    datasets = sorted(unit.dataset_to_tasks)
    if task_name is None:
        if len(datasets) != 1:
            raise UsageError(f"{checkpoint} has the tasks of {', '.join(datasets)}: name one with task_name")
        task_name = datasets[0]
    elif task_name not in datasets:
        raise UsageError(f"{checkpoint} has no task '{task_name}' (it has {', '.join(datasets)})")
    return FAIRChemCalculator(unit, task_name=task_name)


def read_atoms(path: str | Path, index: int = 0) -> Atoms:
    """Frame ``index`` of a structure file (``MDRunner``'s ``atoms``), read as ``leignn-md`` reads it."""
    from leignn_plugin.md.structure import read_structure

    return read_structure(path, index)


def nve_inputs(path: str | Path, temperature_K: float) -> list[tuple[Atoms, float]]:
    """Every frame of ``path`` with the temperature to start it at (``NVEMDRunner``'s input; the
    runner runs one structure per array job, so ``job.scheduler.num_array_jobs`` is their number)."""
    import ase.io

    return [(atoms, float(temperature_K)) for atoms in ase.io.read(path, ":")]


def phonon_inputs(folder: str | Path) -> list[Path]:
    """The phonopy files (``*.yaml``, ``*.yaml.bz2``) in ``folder``, sorted (``MDRPhononRunner``'s input)."""
    folder = Path(folder)
    found = sorted(p for p in folder.iterdir() if p.name.endswith((".yaml", ".yaml.bz2")))
    if not found:
        raise UsageError(f"{folder} holds no phonopy .yaml files")
    return found


def _relaxed(atoms: Atoms, fmax: float = 0.02) -> float:
    atoms.calc = EMT()
    BFGS(atoms, logfile=None, maxstep=0.2).run(fmax=fmax, steps=300)
    return float(atoms.get_potential_energy())


def adsorption_frames(seed: int = 0) -> list[Frame]:
    """Cu(111) slabs with one adsorbate each (initial structures), with the reference energies fairchem's
    ``AdsorptionRunner`` reads: the relaxed adsorbate + slab, the relaxed clean slab and the adsorbate
    in the gas phase, all from EMT."""
    spec = SlabSpec(metals=("Cu",), facets=("111",), adsorbates=DEMO_ADSORBATES)
    slab_energy = _relaxed(build_slab("Cu", "111", spec))
    frames = []
    for sid, adsorbate in enumerate(DEMO_ADSORBATES):
        atoms = initial_structure("Cu", "111", adsorbate, "fcc", spec, np.random.default_rng((seed, sid)))
        gas = Atoms(adsorbate, positions=ADSORBATE_GEOMETRY[adsorbate], cell=[12.0, 12.0, 12.0])
        extras = {"dft_relaxed_adslab_energy": _relaxed(atoms.copy()), "dft_relaxed_slab_energy": slab_energy,
                  "gas_ref": _relaxed(gas)}
        frames.append(Frame(atoms, None, None, None, sid, 0, f"demo adsorption {sid} ({adsorbate} on Cu(111))",
                            extras))
    return frames


def write_demo_inputs(out: Path, overwrite: bool = False) -> dict[str, Path]:
    """Small inputs for every calculate runner in the new folder ``out`` (written aside and moved into
    place when complete): ``adsorption/`` (ASE-LMDB of adsorbate + slab structures with reference
    energies, for relaxations and adsorption energies), ``bulk/`` (ASE-LMDB of fcc Cu, for elastic
    tensors), ``md.extxyz`` (a Cu(111) slab with O, for MD) and ``phonons/Cu.yaml`` (phonopy's
    displacement set of fcc Cu)."""
    import ase.io
    import phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    with staged_output(out, overwrite=overwrite) as stage:
        frames = adsorption_frames()
        write_aselmdb_shards(frames, stage / "adsorption", with_labels=False, progress=False)
        cu = Frame(bulk("Cu", "fcc", a=3.6, cubic=True), None, None, None, 0, 0, "fcc Cu")
        write_aselmdb_shards([cu], stage / "bulk", with_labels=False, progress=False)
        start = frames[0].atoms.copy()
        start.info = {}  # the slab builder's adsorbate_info has no place in an extxyz header
        ase.io.write(stage / "md.extxyz", start)
        (stage / "phonons").mkdir()
        primitive = bulk("Cu", "fcc", a=3.6)
        unitcell = PhonopyAtoms(symbols=primitive.get_chemical_symbols(), cell=primitive.cell.array,
                                scaled_positions=primitive.get_scaled_positions())
        phonon = phonopy.Phonopy(unitcell, supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="auto")
        phonon.generate_displacements(distance=0.01)
        phonon.save(str(stage / "phonons" / "Cu.yaml"))
    return {"adsorption": out / "adsorption", "bulk": out / "bulk", "md": out / "md.extxyz",
            "phonons": out / "phonons"}
