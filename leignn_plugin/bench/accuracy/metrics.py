"""Test-set metrics on plain arrays, and mean ± spread over seeds.

The definitions are OC20's, as fairchem's evaluator computes them: force MAE over every component of
every evaluated (free) atom; force cosine as the mean over atoms of the cosine between predicted and
reference force vectors; EFwT, the fraction of structures whose energy is within 0.02 eV and all of
whose force components are within 0.03 eV/Å of the reference.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

EFWT_ENERGY = 0.02  # eV
EFWT_FORCE = 0.03  # eV/Å
COSINE_EPS = 1e-8


def energy_mae(energy: np.ndarray, ref_energy: np.ndarray) -> float:
    """Mean absolute energy error per structure (eV)."""
    return float(np.abs(np.asarray(energy) - np.asarray(ref_energy)).mean())


def force_mae(forces: np.ndarray, ref_forces: np.ndarray) -> float:
    """Mean absolute error over all force components ([atoms, 3] arrays, eV/Å)."""
    return float(np.abs(np.asarray(forces) - np.asarray(ref_forces)).mean())


def force_cosine(forces: np.ndarray, ref_forces: np.ndarray) -> float:
    """Mean over atoms of cos(predicted force, reference force); a zero vector counts as cosine 0."""
    forces, ref_forces = np.asarray(forces, dtype=np.float64), np.asarray(ref_forces, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(forces, axis=1), COSINE_EPS) * np.maximum(
        np.linalg.norm(ref_forces, axis=1), COSINE_EPS)
    return float(((forces * ref_forces).sum(axis=1) / norms).mean())


def efwt(energy: np.ndarray, ref_energy: np.ndarray, forces: np.ndarray, ref_forces: np.ndarray,
         atoms_per_frame: np.ndarray) -> float:
    """Fraction of structures with |energy error| < 0.02 eV and every |force component error| < 0.03 eV/Å.

    ``forces`` are the evaluated atoms of all structures, concatenated; ``atoms_per_frame`` says how many
    belong to each structure (a structure without evaluated atoms is judged on its energy alone).
    """
    energy_ok = np.abs(np.asarray(energy) - np.asarray(ref_energy)) < EFWT_ENERGY
    errors = np.abs(np.asarray(forces) - np.asarray(ref_forces)).reshape(len(forces), -1)
    bounds = np.concatenate([[0], np.cumsum(atoms_per_frame)])
    if bounds[-1] != len(errors) or len(atoms_per_frame) != len(energy_ok):
        raise ValueError(f"efwt: {len(errors)} force rows for frames holding {bounds[-1]} atoms, "
                         f"{len(energy_ok)} energies for {len(atoms_per_frame)} frames")
    forces_ok = np.array([errors[a:b].max(initial=0.0) < EFWT_FORCE for a, b in itertools.pairwise(bounds)])
    return float((energy_ok & forces_ok).mean())


def scores(pairs: dict[str, np.ndarray], atoms_per_frame: np.ndarray) -> dict[str, float]:
    """Energy MAE, force MAE, force cosine and EFwT of aligned predictions (``aligned_predictions``)."""
    return {
        "energy_mae": energy_mae(pairs["energy"], pairs["ref_energy"]),
        "forces_mae": force_mae(pairs["forces"], pairs["ref_forces"]),
        "forces_cosine": force_cosine(pairs["forces"], pairs["ref_forces"]),
        "efwt": efwt(pairs["energy"], pairs["ref_energy"], pairs["forces"], pairs["ref_forces"], atoms_per_frame),
        "frames": len(pairs["energy"]),
    }


def atoms_per_frame(pred_path: Path) -> np.ndarray:
    """How many force rows each structure has in a fairchem S2EF predictions file (free atoms)."""
    with np.load(pred_path, allow_pickle=False) as npz:
        total, splits = len(npz["forces"]), npz["chunk_idx"].astype(np.int64)
    return np.diff(np.concatenate([[0], splits, [total]]))


def score_file(pred_path: Path, lmdb_dir: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The scores of a predictions file against the LMDB's labels, and the aligned arrays (for plots)."""
    from leignn_plugin.workflows.evaluation import aligned_predictions

    pairs = aligned_predictions(pred_path, lmdb_dir)
    return scores(pairs, atoms_per_frame(pred_path)), pairs


def mean_spread(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation over seeds (spread None for a single value or none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
