"""Score predictions against reference labels and draw the plots a person looks at."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from leignn_plugin.outputs import replace_file, write_text

TRAIN_LINE = re.compile(r"forces_mae: ([0-9.eE+-]+).*?step: ([0-9.eE+-]+)")
LARGE_FORCE = 1.0
"""eV/Å: force components whose reference magnitude is above this get their own MAE (the rare large
forces an overall MAE hides)."""


def reference_labels(lmdb_dir: Path) -> dict[str, np.ndarray]:
    """ids (sid_fid), energies and forces of an S2EF LMDB, read with fairchem's own reader."""
    from leignn_plugin.data.safe_records import open_lmdb_dataset

    dataset = open_lmdb_dataset(lmdb_dir, key_mapping={"y": "energy", "force": "forces"})
    ids, energy, forces, fixed = [], [], [], []
    for i in range(len(dataset)):
        d = dataset[i]
        ids.append(f"{int(d.sid)}_{int(d.fid)}")
        energy.append(float(d.energy))
        forces.append(d.forces.numpy())
        fixed.append(d.fixed.numpy() if hasattr(d, "fixed") else np.zeros(len(d.forces)))
    return {"ids": np.array(ids), "energy": np.array(energy), "forces": forces, "fixed": fixed}


def _free_atom_forces(pred: np.ndarray, ref: dict, j: int) -> np.ndarray:
    """pred - reference on free atoms; predict stores free atoms only when eval_on_free_atoms is set."""
    free = ref["fixed"][j] == 0
    reference = ref["forces"][j]
    if len(pred) == len(reference):
        return (pred - reference)[free]
    return pred - reference[free]


def aligned_predictions(pred_path: Path, lmdb_dir: Path) -> dict[str, np.ndarray]:
    """predict's energies and free-atom forces beside the reference labels of the same frames."""
    ref = reference_labels(lmdb_dir)
    with np.load(pred_path, allow_pickle=False) as npz:  # predictions are plain arrays: never unpickle
        ids = [str(i) for i in npz["ids"]]
        energy = npz["energy"].astype(np.float64).reshape(-1)
        forces = np.split(npz["forces"].astype(np.float64), npz["chunk_idx"])
    index = {sid: k for k, sid in enumerate(ref["ids"])}
    order = [index[i] for i in ids]
    ref_forces = np.concatenate([ref["forces"][j][ref["fixed"][j] == 0] for j in order])  # [free atoms, 3]
    errors = np.concatenate([_free_atom_forces(forces[k], ref, j) for k, j in enumerate(order)])
    return {"energy": energy, "ref_energy": ref["energy"][order], "forces": ref_forces + errors,
            "ref_forces": ref_forces}


def score_pairs(pairs: dict[str, np.ndarray]) -> dict[str, float | int | None]:
    """Energy MAE (eV), force MAE on free atoms (eV/Å), and the force MAE of the components whose
    reference is above :data:`LARGE_FORCE` in magnitude (None when there is none), of aligned pairs."""
    deviation = np.abs(pairs["forces"] - pairs["ref_forces"]).ravel()  # [free atoms * 3]
    large = np.abs(pairs["ref_forces"]).ravel() > LARGE_FORCE
    return {"energy_mae": float(np.abs(pairs["energy"] - pairs["ref_energy"]).mean()),
            "forces_mae": float(deviation.mean()),
            "forces_mae_above_1": float(deviation[large].mean()) if large.any() else None,
            "force_components_above_1": int(large.sum()),
            "frames": len(pairs["energy"])}


def score_predictions(pred_path: Path, lmdb_dir: Path) -> dict[str, float | int | None]:
    """:func:`score_pairs` of predict's npz against the labels of the LMDB."""
    return score_pairs(aligned_predictions(pred_path, lmdb_dir))


def training_curve(log: str) -> list[tuple[float, float]]:
    """(step, training force MAE) pairs from fairchem's training log."""
    return [(float(step), float(mae)) for mae, step in TRAIN_LINE.findall(log)]


def parity_plot(pred_path: Path, lmdb_dir: Path, out: Path, title: str | None = None) -> Path:
    """Predicted vs reference energies and force components of predict's npz, side by side."""
    return pairs_parity_plot(aligned_predictions(pred_path, lmdb_dir), out, title)


def pairs_parity_plot(pairs: dict[str, np.ndarray], out: Path, title: str | None = None) -> Path:
    """Predicted vs reference energies and force components of aligned pairs, side by side; the force
    panel also gives the MAE of the components above :data:`LARGE_FORCE`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = score_pairs(pairs)
    large = "" if scores["forces_mae_above_1"] is None else (
        f", |F| > {LARGE_FORCE:g}: {scores['forces_mae_above_1']:.3g}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, x, y, label, note in ((axes[0], pairs["ref_energy"], pairs["energy"], "energy (eV)", ""),
                                  (axes[1], pairs["ref_forces"].ravel(), pairs["forces"].ravel(),
                                   "force component, free atoms (eV/Å)", large)):
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(x, y, s=6, alpha=0.6)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"LEIGNN {label}")
        ax.set_title(f"MAE {np.abs(x - y).mean():.3g}{note}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with replace_file(out, suffix=".png") as tmp:  # replaces a link at ``out``, never writes through it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out


def curve_plot(curve: list[tuple[float, float]], out: Path, label: str = "training force MAE (eV/Å)") -> Path:
    """A training curve (``label`` against step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    steps, maes = zip(*curve)
    ax.plot(steps, maes, marker="o", ms=3)
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.set_yscale("log")
    fig.tight_layout()
    with replace_file(out, suffix=".png") as tmp:  # replaces a link at ``out``, never writes through it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out


def write_json(data: dict, path: Path) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True))


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar fairchem's tensorboard logger wrote in ``log_dir``, as (step, value) lists."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, float(e.value)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def relaxation_energies(traj_dir: Path) -> dict[str, tuple[float, float]]:
    """(initial, final) energies of every ML relaxation trajectory fairchem wrote to ``traj_dir``.

    fairchem leaves the trajectory of a structure that was converged from the start empty; such
    structures are left out.
    """
    from ase.io import read

    out = {}
    for path in sorted(traj_dir.glob("*.traj")):
        frames = read(path, index=":")
        if frames:
            out[path.stem] = (float(frames[0].get_potential_energy()), float(frames[-1].get_potential_energy()))
    return out
