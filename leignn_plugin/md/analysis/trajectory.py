"""Frames of a run folder or of any ASE-readable trajectory, as arrays with a time axis."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.constraints import FixAtoms

from leignn_plugin.md.files import LOG, RUN_INFO, TRAJECTORY


@dataclass
class Frames:
    """positions [T, N, 3], cells [T, 3, 3], numbers [N], pbc [3], fixed [N] and the frame spacing."""

    source: Path
    positions: np.ndarray
    cells: np.ndarray
    numbers: np.ndarray
    pbc: np.ndarray
    fixed: np.ndarray
    frame_ps: float

    @property
    def time_ps(self) -> np.ndarray:
        return np.arange(self.positions.shape[0]) * self.frame_ps

    @property
    def periodic(self) -> bool:
        return bool(np.all(self.pbc))


def read_log(run_dir: Path) -> dict[str, np.ndarray]:
    """The run's CSV log as columns (missing values become NaN)."""
    with open(run_dir / LOG, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: np.array([float(row[key]) if row[key] != "" else np.nan for row in rows]) for key in rows[0]}


def read_run_info(run_dir: Path) -> dict:
    path = run_dir / RUN_INFO
    if not path.is_file():
        raise ValueError(f"{run_dir} is not an MD run folder (no {RUN_INFO}; run `leignn-md run` first)")
    return json.loads(path.read_text())


def read_frames(path: Path, frame_ps: float | None = None) -> Frames:
    """Frames of a run folder (spacing from its run.json) or of a trajectory file (spacing ``frame_ps``)."""
    import ase.io

    path = Path(path)
    if path.is_dir():
        info = read_run_info(path)
        traj_path = path / info.get("trajectory", TRAJECTORY)
        frame_ps = info["frame_interval_fs"] / 1000.0
    else:
        traj_path = path
        beside = path.parent / RUN_INFO
        if frame_ps is None and beside.is_file():
            frame_ps = json.loads(beside.read_text())["frame_interval_fs"] / 1000.0
    if not traj_path.is_file():
        raise ValueError(f"trajectory not found: {traj_path}")
    if frame_ps is None or not frame_ps > 0:
        raise ValueError(f"the time between frames of {traj_path} is unknown: pass it in fs (--reference-interval-fs)")
    try:
        images = ase.io.read(traj_path, index=":")
    except Exception as err:  # ASE raises many types for unreadable files
        raise ValueError(f"cannot read trajectory {traj_path}: {err}") from None
    if not images:
        raise ValueError(f"{traj_path} holds no frames")
    numbers = images[0].numbers
    if any(len(a) != len(numbers) or np.any(a.numbers != numbers) for a in images):
        raise ValueError(f"{traj_path}: frames differ in their atoms; analyses need a fixed set of atoms")
    fixed = np.zeros(len(numbers), dtype=bool)
    for constraint in images[0].constraints:
        if isinstance(constraint, FixAtoms):
            fixed[constraint.index] = True
    return Frames(
        source=traj_path,
        positions=np.stack([a.positions for a in images]),
        cells=np.stack([a.cell.complete().array for a in images]),
        numbers=np.asarray(numbers),
        pbc=np.asarray(images[0].pbc, dtype=bool),
        fixed=fixed,
        frame_ps=float(frame_ps),
    )
