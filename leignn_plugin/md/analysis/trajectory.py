"""Frames of a run folder or of any ASE-readable trajectory, as arrays with a time axis."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.constraints import FixAtoms

from leignn_plugin.errors import UsageError
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
    """The run's CSV log as columns (missing values become NaN); a value that is not a number is one
    line naming the file, the row and the column."""
    path = run_dir / LOG
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"cannot read the log {path}: {err}") from None
    if not rows:
        return {}
    columns: dict[str, list[float]] = {key: [] for key in rows[0]}
    for number, row in enumerate(rows, start=2):
        for key in columns:
            text = row.get(key)
            try:
                columns[key].append(float(text) if text not in ("", None) else np.nan)
            except (TypeError, ValueError):
                raise UsageError(f"{path}, line {number}: column {key} holds {text!r}, not a number") from None
    return {key: np.array(values) for key, values in columns.items()}


RUN_INFO_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "frame_interval_fs": ((int, float), "a positive number"),
    "settings": (dict, "a mapping"),
    "settings.ensemble": (dict, "a mapping"),
    "settings.ensemble.name": (str, "a name"),
}
"""What ``leignn-md analyze`` reads from run.json, and what each must be."""


def read_run_info(run_dir: Path) -> dict:
    """``run_dir``'s run.json, checked for the keys the analyses read: a missing or malformed one is one
    line naming the file and the key."""
    path = run_dir / RUN_INFO
    if not path.is_file():
        raise ValueError(f"{run_dir} is not an MD run folder (no {RUN_INFO}; run `leignn-md run` first)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path} is not a readable run.json ({err}); it is written by leignn-md run") from None
    if not isinstance(info, dict):
        raise UsageError(f"{path} holds a JSON {type(info).__name__}, not the mapping leignn-md run writes")
    for key, (kind, what) in RUN_INFO_KEYS.items():
        value: object = info
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            raise UsageError(f"{path} lacks the key {key} (written by leignn-md run)")
        valid = isinstance(value, kind) and not isinstance(value, bool)
        if valid and kind == (int, float):
            valid = math.isfinite(value) and value > 0
        if not valid:
            raise UsageError(f"{path}: {key} must be {what}, got {value!r}")
    result = info.get("result")
    if result is not None and not isinstance(result, dict):
        raise UsageError(f"{path}: result must be a mapping, got {result!r}")
    simulated = (result or {}).get("simulated_ps", 0.0)
    if not isinstance(simulated, (int, float)) or isinstance(simulated, bool) or not simulated >= 0:
        raise UsageError(f"{path}: result.simulated_ps must be a number >= 0, got {simulated!r}")
    if not isinstance(info.get("trajectory", TRAJECTORY), str):
        raise UsageError(f"{path}: trajectory must be a file name, got {info['trajectory']!r}")
    return info


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
        if frame_ps is None and (path.parent / RUN_INFO).is_file():
            frame_ps = read_run_info(path.parent)["frame_interval_fs"] / 1000.0
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
