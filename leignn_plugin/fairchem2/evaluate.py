"""A 2.x LEIGNN checkpoint on ``.aselmdb`` data through fairchem's own ``FAIRChemCalculator`` (what a
user of the model gets): errors on labelled data (energy, energy per atom and force MAE), and S2EF
predictions in the npz format of ``main.py --mode predict`` (``ids`` ``sid_fid``, ``energy``, ``forces``,
``chunk_idx``), which ``leignn-submission`` merges into an OC20 leaderboard file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from leignn_plugin.data.aselmdb_reader import named_rows
from leignn_plugin.errors import StructureError, UsageError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.outputs import replace_file


@dataclass(frozen=True)
class Errors:
    """Mean absolute errors over ``structures`` labelled structures (forces over every component)."""

    structures: int
    energy_mae: float
    energy_per_atom_mae: float
    forces_mae: float
    forces_mae_free_atoms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def shards(source: Path) -> list[Path]:
    """The ``.aselmdb`` files of ``source`` (a file or a folder of them)."""
    if source.is_file() and source.suffix == ".aselmdb":
        return [source]
    found = sorted(source.glob("*.aselmdb")) if source.is_dir() else []
    if not found:
        raise UsageError(f"{source}: no .aselmdb files (build them with leignn-data ... --output-format aselmdb)")
    return found


def calculator(checkpoint: Path, task: str, trust_checkpoint: bool = False, baseline: bool = False):
    """fairchem's ``FAIRChemCalculator`` on the checkpoint's task ``task`` (one line if it has none);
    ``baseline``: the checkpoint is the eSCN-MD baseline's, not LEIGNN's."""
    from fairchem.core import FAIRChemCalculator

    unit = load_predict_unit(checkpoint, trust_checkpoint=trust_checkpoint, baseline=baseline)
    if task not in unit.dataset_to_tasks:
        raise UsageError(f"{checkpoint} has no task '{task}' (its tasks: {', '.join(unit.dataset_to_tasks)})")
    return FAIRChemCalculator(unit, task_name=task)


def predict(checkpoint: Path, task: str, sources: list[Path], out: Path, progress: bool = True,
            trust_checkpoint: bool = False) -> int:
    """Write the S2EF predictions of ``checkpoint`` for every row of ``sources`` (labelled or not) to the
    npz ``out`` (replaced atomically once complete); returns the number of structures."""
    files = [f for source in sources for f in shards(source)]
    calc = calculator(checkpoint, task, trust_checkpoint)
    ids, energies, forces = [], [], []
    rows = (row for path in files for row in named_rows(path))
    for where, atoms, data in tqdm(rows, desc="predicting", unit="structure", disable=not progress, leave=False):
        ids.append(f"{data.get('sid', len(ids))}_{data.get('fid', 0)}")
        atoms.calc = calc
        try:
            energies.append(atoms.get_potential_energy())
        except StructureError as err:
            raise StructureError(f"{where}: {err}") from None
        forces.append(atoms.get_forces(apply_constraint=False))
    if not ids:
        raise UsageError(f"no structures in {', '.join(map(str, sources))}")
    chunk_idx = np.cumsum([len(f) for f in forces])[:-1]  # [structures - 1] where each frame's rows end
    with replace_file(out, suffix=".npz") as partial:
        np.savez_compressed(partial, ids=np.array(ids), energy=np.array(energies, dtype=np.float32),
                            forces=np.concatenate(forces).astype(np.float32), chunk_idx=chunk_idx)
    return len(ids)


def evaluate(checkpoint: Path, task: str, sources: list[Path], progress: bool = True,
             trust_checkpoint: bool = False, baseline: bool = False) -> Errors:
    """The errors of ``checkpoint`` (task ``task``) on every labelled row of ``sources``; a structure the
    model refuses (``StructureError``) is named by its file and row."""
    files = [f for source in sources for f in shards(source)]
    calc = calculator(checkpoint, task, trust_checkpoint, baseline)
    energy, per_atom, forces, free = [], [], [], []
    rows = ((where, atoms) for path in files for where, atoms, _ in named_rows(path))
    for where, atoms in tqdm(rows, desc="evaluating", unit="structure", disable=not progress, leave=False):
        labels = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in labels or "forces" not in labels:
            continue
        fixed = np.zeros(len(atoms), dtype=bool)
        for constraint in atoms.constraints:
            fixed[getattr(constraint, "index", [])] = True
        atoms.calc = calc
        try:
            predicted = atoms.get_potential_energy()
        except StructureError as err:
            raise StructureError(f"{where}: {err}") from None
        error = abs(predicted - float(labels["energy"]))
        energy.append(error)
        per_atom.append(error / len(atoms))
        deviation = np.abs(atoms.get_forces(apply_constraint=False) - np.asarray(labels["forces"]))  # [n, 3]
        forces.append(deviation)
        free.append(deviation[~fixed])
    if not energy:
        raise UsageError(f"no structure with energy and forces in {', '.join(map(str, sources))}")
    return Errors(structures=len(energy), energy_mae=float(np.mean(energy)),
                  energy_per_atom_mae=float(np.mean(per_atom)), forces_mae=float(np.concatenate(forces).mean()),
                  forces_mae_free_atoms=float(np.concatenate(free).mean()))


def format_errors(errors: Errors, checkpoint: Path, task: str) -> str:
    return "\n".join([
        f"{checkpoint} (task {task}) on {errors.structures} structures",
        f"  energy MAE           {errors.energy_mae:.4f} eV",
        f"  energy MAE per atom  {errors.energy_per_atom_mae:.5f} eV/atom",
        f"  force MAE            {errors.forces_mae:.4f} eV/Å",
        f"  force MAE free atoms {errors.forces_mae_free_atoms:.4f} eV/Å",
    ])
