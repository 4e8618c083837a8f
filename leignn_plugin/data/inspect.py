"""Statistics of written datasets, for checking them and filling fairchem's normalisation settings.

``leignn-data inspect DIR`` reports counts, elements, the natoms histogram, energy and force
statistics, and per-element linear energy references (least squares of the energy on element
counts).  Standard deviations are population values (ddof = 0); the force RMS is
``sqrt(mean(F_ij^2))`` over all components, which is what fairchem's force ``rmsd`` means with a
zero mean.  With references, fairchem normalises ``E - sum_Z n_Z * ref_Z``: use the residual mean
and std then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase.constraints import FixAtoms
from ase.data import chemical_symbols
from numpy.typing import NDArray

from leignn_plugin.data.aselmdb_reader import read_rows
from leignn_plugin.data.conventions import ENERGY_KEYS, FORCES_KEYS
from leignn_plugin.data.errors import DataError

N_ELEMENTS = 119
"""Length of fairchem's element-reference vector (index = atomic number, 0 unused)."""

RELAXED_ENERGY_KEY = "y_relaxed"


@dataclass(frozen=True)
class ElementStats:
    """One element: how often it occurs and its fitted linear reference energy (eV)."""

    symbol: str
    number: int
    atoms: int
    samples: int
    reference: float


@dataclass(frozen=True)
class Moments:
    """Mean, population standard deviation, RMS, minimum and maximum of some values."""

    mean: float
    std: float
    rms: float
    min: float
    max: float

    @classmethod
    def of(cls, values: NDArray[np.float64]) -> Moments:
        return cls(
            mean=float(values.mean()),
            std=float(values.std()),
            rms=float(np.sqrt(np.mean(values**2))),
            min=float(values.min()),
            max=float(values.max()),
        )


@dataclass(frozen=True)
class DatasetStats:
    """Everything ``inspect`` reports for one dataset directory."""

    path: str
    samples: int
    atoms: int
    energy_key: str | None
    forces_key: str | None
    natoms: Moments
    natoms_histogram: list[tuple[int, int, int]]
    elements: list[ElementStats]
    energy: Moments | None
    energy_per_atom: Moments | None
    forces: Moments | None
    forces_free_rms: float | None
    max_force_norm: float | None
    reference_residual: Moments | None
    reference_rank: int | None

    def references_vector(self) -> NDArray[np.float64]:
        """Element references indexed by atomic number, as fairchem's ``element_references``."""
        vector = np.zeros(N_ELEMENTS, dtype=np.float64)
        for element in self.elements:
            vector[element.number] = element.reference
        return vector


DATASET_PATTERNS = ("*.lmdb", "*.aselmdb")
"""fairchem 1.x LMDB and fairchem 2.x ASE-LMDB files."""


def find_datasets(root: Path) -> list[Path]:
    """``root`` itself if it holds ``*.lmdb`` or ``*.aselmdb`` files, else every directory below it that does."""
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    if any(any(root.glob(pattern)) for pattern in DATASET_PATTERNS):
        return [root]
    found = sorted(
        {
            p.parent
            for pattern in DATASET_PATTERNS
            for p in root.rglob(pattern)
            if not any(part.startswith(".") for part in p.relative_to(root).parts)
        }
    )
    if not found:
        raise DataError(f"{root}: no *.lmdb or *.aselmdb files found")
    return found


def inspect_dataset(path: Path) -> DatasetStats:
    """Read every sample of one dataset directory: ``.aselmdb`` rows directly, fairchem 1.x LMDBs
    through fairchem's ``LmdbDataset``.

    The LMDB files are closed afterwards (an LMDB file can be open only once per process). Their
    headers are checked first, so a truncated file is one line instead of a SIGBUS.
    """
    if any(path.glob("*.aselmdb")):
        return _read_aselmdb_dataset(path)
    # fairchem 1.x and torch_geometric read these records: imported only here
    from leignn_plugin.data.safe_records import opened_lmdb_dataset

    with opened_lmdb_dataset(path) as dataset:
        return _read_dataset(path, dataset)


def _read_aselmdb_dataset(path: Path) -> DatasetStats:
    """Per-sample counts, energies and forces of the ``.aselmdb`` shards of one directory."""
    natoms, counts, energies, forces, free = [], [], [], [], []
    for shard in sorted(path.glob("*.aselmdb")):
        for atoms, _ in read_rows(shard):
            numbers = atoms.numbers
            natoms.append(len(numbers))
            counts.append(np.bincount(numbers, minlength=N_ELEMENTS))
            results = atoms.calc.results if atoms.calc is not None else {}
            energies.append(float(results["energy"]) if "energy" in results else np.nan)
            if "forces" in results:
                forces.append(np.asarray(results["forces"], dtype=np.float64))
                fixed = np.zeros(len(numbers), dtype=bool)
                for constraint in atoms.constraints:
                    if isinstance(constraint, FixAtoms):
                        fixed[constraint.index] = True
                free.append(~fixed)
    if not natoms:
        raise DataError(f"{path}: dataset is empty")
    energy = np.asarray(energies)
    energy_key = "energy" if np.isfinite(energy).all() else None
    return _summarise(path, np.asarray(natoms, dtype=np.int64), np.stack(counts), energy_key,
                      energy, "forces" if len(forces) == len(natoms) else None, forces, free)


def _read_dataset(path: Path, dataset) -> DatasetStats:
    """Collect per-sample counts, energies and forces, then summarise them."""
    if len(dataset) == 0:
        raise DataError(f"{path}: dataset is empty")
    first = dataset[0]
    energy_key = next((k for k in (*ENERGY_KEYS, RELAXED_ENERGY_KEY) if k in first), None)
    forces_key = next((k for k in FORCES_KEYS if k in first), None)
    natoms = np.empty(len(dataset), dtype=np.int64)
    energies = np.empty(len(dataset), dtype=np.float64)
    counts = np.zeros((len(dataset), N_ELEMENTS), dtype=np.int64)
    forces: list[NDArray[np.float64]] = []
    free: list[NDArray[np.bool_]] = []
    for index in range(len(dataset)):
        data = dataset[index]
        numbers = data.atomic_numbers.long().numpy()
        natoms[index] = int(data.natoms)
        counts[index] = np.bincount(numbers, minlength=N_ELEMENTS)
        if energy_key is not None:
            energies[index] = float(data[energy_key])
        if forces_key is not None:
            forces.append(data[forces_key].double().numpy())
            fixed = data.fixed.numpy() if "fixed" in data else np.zeros(len(numbers))
            free.append(fixed == 0)
    return _summarise(path, natoms, counts, energy_key, energies, forces_key, forces, free)


def _summarise(
    path: Path,
    natoms: NDArray[np.int64],
    counts: NDArray[np.int64],
    energy_key: str | None,
    energies: NDArray[np.float64],
    forces_key: str | None,
    forces: list[NDArray[np.float64]],
    free: list[NDArray[np.bool_]],
) -> DatasetStats:
    present = np.flatnonzero(counts.sum(axis=0))
    references = np.zeros(len(present))
    residual: Moments | None = None
    rank: int | None = None
    if energy_key is not None:
        design = counts[:, present].astype(np.float64)
        references, _, rank, _ = np.linalg.lstsq(design, energies, rcond=None)
        residual = Moments.of(energies - design @ references)
    elements = [
        ElementStats(
            symbol=chemical_symbols[z],
            number=int(z),
            atoms=int(counts[:, z].sum()),
            samples=int((counts[:, z] > 0).sum()),
            reference=float(ref),
        )
        for z, ref in zip(present, references)
    ]
    all_forces = np.concatenate(forces) if forces else None
    free_mask = np.concatenate(free) if free else None
    return DatasetStats(
        path=str(path),
        samples=len(natoms),
        atoms=int(natoms.sum()),
        energy_key=energy_key,
        forces_key=forces_key,
        natoms=Moments.of(natoms.astype(np.float64)),
        natoms_histogram=_histogram(natoms),
        elements=elements,
        energy=Moments.of(energies) if energy_key else None,
        energy_per_atom=Moments.of(energies / natoms) if energy_key else None,
        forces=Moments.of(all_forces.reshape(-1)) if all_forces is not None else None,
        forces_free_rms=(
            float(np.sqrt(np.mean(all_forces[free_mask] ** 2)))
            if all_forces is not None and free_mask is not None and free_mask.any()
            else None
        ),
        max_force_norm=float(np.linalg.norm(all_forces, axis=1).max()) if all_forces is not None else None,
        reference_residual=residual,
        reference_rank=None if rank is None else int(rank),
    )


def _histogram(natoms: NDArray[np.int64], max_bins: int = 10) -> list[tuple[int, int, int]]:
    """Rows ``(low, high, count)``: one per distinct natoms if few, else integer ranges."""
    values, counts = np.unique(natoms, return_counts=True)
    if len(values) <= max_bins:
        return [(int(v), int(v), int(c)) for v, c in zip(values, counts)]
    low, high = int(values[0]), int(values[-1])
    edges = np.unique(np.linspace(low, high + 1, max_bins + 1).astype(np.int64))
    binned, _ = np.histogram(natoms, bins=edges)
    return [(int(a), int(b) - 1, int(c)) for a, b, c in zip(edges[:-1], edges[1:], binned)]


def format_stats(stats: DatasetStats) -> str:
    """A plain-text report of one dataset."""
    lines = [
        f"dataset {stats.path}",
        f"  samples {stats.samples}   atoms {stats.atoms}   "
        f"energy field {stats.energy_key or '-'}   forces field {stats.forces_key or '-'}",
        f"  natoms  min {stats.natoms.min:.0f}   mean {stats.natoms.mean:.2f}   max {stats.natoms.max:.0f}",
        "  natoms histogram",
    ]
    peak = max(count for _, _, count in stats.natoms_histogram)
    for low, high, count in stats.natoms_histogram:
        label = f"{low}" if low == high else f"{low}-{high}"
        lines.append(f"    {label:>9}  {count:>8}  {'#' * round(30 * count / peak)}")
    lines.append(f"  {'element':<8}{'Z':>4}{'atoms':>10}{'samples':>10}{'reference (eV)':>18}")
    for element in stats.elements:
        lines.append(
            f"  {element.symbol:<8}{element.number:>4}{element.atoms:>10}{element.samples:>10}{element.reference:>18.6f}"
        )
    header = f"  {'quantity':<26}{'mean':>14}{'std':>14}{'rms':>14}{'min':>14}{'max':>14}"
    rows = [
        ("energy (eV)", stats.energy),
        ("energy per atom (eV)", stats.energy_per_atom),
        ("energy - references (eV)", stats.reference_residual),
        ("force components (eV/Å)", stats.forces),
    ]
    lines.append(header)
    for name, moments in rows:
        if moments is not None:
            lines.append(
                f"  {name:<26}{moments.mean:>14.6f}{moments.std:>14.6f}{moments.rms:>14.6f}"
                f"{moments.min:>14.6f}{moments.max:>14.6f}"
            )
    if stats.forces is not None:
        free = "-" if stats.forces_free_rms is None else f"{stats.forces_free_rms:.6f}"
        lines.append(f"  force RMS on free atoms {free} eV/Å   largest |F| {stats.max_force_norm:.6f} eV/Å")
    if stats.reference_rank is not None and stats.reference_rank < len(stats.elements):
        lines.append(
            f"  note: compositions span rank {stats.reference_rank} < {len(stats.elements)} elements; "
            "references are the minimum-norm least-squares solution"
        )
    lines.extend(_fairchem_hint(stats))
    return "\n".join(lines)


def _fairchem_hint(stats: DatasetStats) -> list[str]:
    """The matching fairchem ``dataset.train.transforms`` normaliser values."""
    if stats.energy is None or stats.reference_residual is None:
        return []
    forces = "" if stats.forces is None else f", forces: {{mean: 0.0, rmsd: {stats.forces.rms:.6f}}}"
    fairchem2 = "" if stats.forces is None else (
        f"  fairchem 2.x (configs/fairchem2): energy_mean: {stats.energy.mean:.6f}  energy_rmsd: "
        f"{stats.energy.std:.6f}  forces_rmsd: {stats.forces.rms:.6f}")
    return [*([fairchem2] if fairchem2 else []),
        "  fairchem normalizer without element_references: "
        f"{{energy: {{mean: {stats.energy.mean:.6f}, rmsd: {stats.energy.std:.6f}}}{forces}}}",
        "  fairchem normalizer with element_references:    "
        f"{{energy: {{mean: {stats.reference_residual.mean:.6f}, rmsd: {stats.reference_residual.std:.6f}}}{forces}}}",
    ]


def stats_to_json(stats: list[DatasetStats]) -> dict[str, object]:
    """JSON-ready form of several datasets' statistics, keyed by path."""
    return {"datasets": {item.path: asdict(item) for item in stats}}


def write_references(stats: DatasetStats, path: Path) -> None:
    """Save ``element_references`` (length 119) as fairchem 1.x's ``element_references.file`` reads it."""
    if stats.energy is None:
        raise DataError(f"{stats.path}: has no energies to fit references to")
    np.savez(path, element_references=stats.references_vector())


ELEMENT_REFERENCES_TARGET = "fairchem.core.modules.normalization.element_references.ElementReferences"
"""What a fairchem 2.x energy task instantiates as its ``element_references``."""


def _yaml_float(value: float) -> str:
    """``value`` with all its digits, always read back as a float (YAML 1.1 reads ``1e-06`` as a string)."""
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text


def references_config(stats: DatasetStats, name: str, command: str) -> str:
    """The fitted references as an option of the ``element_refs`` group of ``configs/fairchem2``: the
    task's ``ElementReferences`` (fairchem 2.x's form, as its own recipes write them) and the mean and
    RMSD of the referenced energies, which the energy normaliser then takes instead of the config's.
    Values are written with all their digits, so the file holds exactly the fitted float64 numbers."""
    if stats.energy is None or stats.reference_residual is None:
        raise DataError(f"{stats.path}: has no energies to fit references to")
    values = ", ".join(_yaml_float(v) for v in stats.references_vector())  # [119], by atomic number
    elements = ", ".join(f"{e.symbol} {e.reference:.6f}" for e in stats.elements)
    return (
        f"# Element references (eV) fitted by least squares to the energies of {stats.path}\n"
        f"# ({stats.samples} structures): {elements}\n"
        f"# Written by: {command}\n"
        f"# Train with them: fairchem -c configs/fairchem2/CONFIG.yaml element_refs={name}\n"
        f"# (or `- override element_refs: {name}` in a config's defaults). The model then learns\n"
        "# E - sum_i ref(Z_i), normalised by the energy_mean and energy_rmsd below, which replace the\n"
        "# config's; fairchem adds the references back to every prediction.\n"
        "references:\n"
        f"  _target_: {ELEMENT_REFERENCES_TARGET}\n"
        "  element_references:\n"
        "    _target_: torch.DoubleTensor\n"
        f"    _args_: [[{values}]]\n"
        f"energy_mean: {_yaml_float(stats.reference_residual.mean)}\n"
        f"energy_rmsd: {_yaml_float(max(stats.reference_residual.std, 1e-6))}\n"
    )
