"""Frames from any file ``ase.io.read`` understands (extxyz, .traj, vasprun.xml, OUTCAR, ...).

All frames of each file are read.  Labels are looked up in this order, so explicit reference
labels win over whatever a calculator left behind:

* energy: ``info["REF_energy"]``, calculator ``energy`` (ASE >= 3.23 moves file energies into a
  SinglePointCalculator), calculator ``free_energy``, ``info["energy"]``;
* forces: ``arrays["REF_forces"]``, calculator ``forces``, ``arrays["forces"]``;
* stress: ``info["REF_stress"]``, calculator ``stress``, ``info["stress"]`` (Voigt-6, 3x3 or 9).

``sid`` is ``info["sid"]`` when it is an integer, else the file's position on the command line;
``fid`` is ``info["fid"]`` when it is an integer, else the frame's index within its file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress
from numpy.typing import NDArray

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.lmdb_check import check_lmdb_file, is_lmdb_file


def read_ase_frames(paths: Sequence[Path], *, file_format: str | None = None) -> Iterator[Frame]:
    """Yield every frame of every file, in order.

    Args:
        paths: Input files.
        file_format: ASE format name, for files whose name does not reveal it.

    Raises:
        DataError: A missing or unreadable file, or a file without structures.
    """
    for file_index, path in enumerate(paths):
        for frame_index, atoms in enumerate(read_ase_file(path, file_format=file_format)):
            yield atoms_to_frame(
                atoms, origin=f"{path}: frame {frame_index}", sid=file_index, fid=frame_index
            )


def read_ase_file(path: Path, *, file_format: str | None = None) -> list[Atoms]:
    """All structures in one file, or a one-line :class:`DataError` saying why not."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if is_lmdb_file(path):  # ase.io.read maps an ASE-LMDB file: a truncated or corrupt one is a SIGBUS
        check_lmdb_file(path)
    try:
        images = ase.io.read(path, index=":", format=file_format)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read by ase.io.read ({detail})") from exc
    if isinstance(images, Atoms):
        images = [images]
    if len(images) == 0:
        raise DataError(f"{path}: contains no structures")
    return list(images)


def atoms_to_frame(atoms: Atoms, *, origin: str, sid: int, fid: int) -> Frame:
    """Split an ASE ``Atoms`` (with labels in calc/info/arrays) into geometry and labels."""
    geometry = Atoms(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell,
        pbc=atoms.pbc,
        tags=atoms.get_tags(),
        constraint=[c.copy() for c in atoms.constraints],
    )
    return Frame(
        atoms=geometry,
        energy=_find_energy(atoms),
        forces=_find_forces(atoms),
        stress=_find_stress(atoms, origin),
        sid=_integer_or(atoms.info.get("sid"), sid),
        fid=_integer_or(atoms.info.get("fid"), fid),
        origin=origin,
    )


def _calculator_result(atoms: Atoms, name: str) -> object | None:
    """A stored calculator result, without triggering any calculation."""
    if atoms.calc is None:
        return None
    return getattr(atoms.calc, "results", {}).get(name)


def _first_present(*candidates: object | None) -> object | None:
    return next((value for value in candidates if value is not None), None)


def _find_energy(atoms: Atoms) -> float | None:
    value = _first_present(
        atoms.info.get("REF_energy"),
        _calculator_result(atoms, "energy"),
        _calculator_result(atoms, "free_energy"),
        atoms.info.get("energy"),
    )
    return None if value is None else float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _find_forces(atoms: Atoms) -> NDArray[np.float64] | None:
    value = _first_present(
        atoms.arrays.get("REF_forces"),
        _calculator_result(atoms, "forces"),
        atoms.arrays.get("forces"),
    )
    return None if value is None else np.asarray(value, dtype=np.float64)


def _find_stress(atoms: Atoms, origin: str) -> NDArray[np.float64] | None:
    value = _first_present(
        atoms.info.get("REF_stress"),
        _calculator_result(atoms, "stress"),
        atoms.info.get("stress"),
    )
    if value is None:
        return None
    stress = np.asarray(value, dtype=np.float64)
    if stress.shape == (6,):
        return voigt_6_to_full_3x3_stress(stress)
    if stress.size == 9:
        return stress.reshape(3, 3)
    raise DataError(f"{origin}: stress has shape {stress.shape}, expected (6,), (9,) or (3, 3)")


def _integer_or(value: object, default: int) -> int:
    """Use an integer id from the file when there is one."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return default
