"""Read the starting structure of an MD run: any ASE format, or one frame of a fairchem LMDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms


def _is_lmdb(path: Path) -> bool:
    return path.suffix == ".lmdb" or (path.is_dir() and any(path.glob("*.lmdb")))


def _lmdb_frame(path: Path, index: int) -> Atoms:
    from leignn_plugin.data.safe_records import open_lmdb_dataset

    dataset = open_lmdb_dataset(path)
    if not -len(dataset) <= index < len(dataset):
        raise ValueError(f"frame {index} does not exist in {path} ({len(dataset)} frames)")
    data = dataset[index % len(dataset)]
    pbc = data.pbc.view(-1).tolist() if getattr(data, "pbc", None) is not None else [True, True, True]
    atoms = Atoms(
        numbers=data.atomic_numbers.long().numpy(),
        positions=data.pos.double().numpy(),
        cell=data.cell.view(3, 3).double().numpy(),
        pbc=[bool(p) for p in pbc],
    )
    if getattr(data, "tags", None) is not None:
        atoms.set_tags(data.tags.long().numpy())
    fixed = getattr(data, "fixed", None)
    if fixed is not None and bool(fixed.any()):
        atoms.set_constraint(FixAtoms(indices=np.flatnonzero(fixed.numpy())))
    return atoms


def read_structure(path: str | Path, index: int = -1) -> Atoms:
    """Frame ``index`` of ``path``: an ASE-readable file, or a fairchem LMDB (file or folder of them)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"structure file not found: {path}")
    if _is_lmdb(path):
        return _lmdb_frame(path, index)
    import ase.io

    from leignn_plugin.data.lmdb_check import check_lmdb_file, is_lmdb_file

    if is_lmdb_file(path):  # ase.io.read maps an ASE-LMDB file: a truncated or corrupt one is a SIGBUS
        check_lmdb_file(path)

    try:
        atoms = ase.io.read(path, index=index)
    except (ase.io.formats.UnknownFileTypeError, StopIteration, IndexError, ValueError, KeyError) as err:
        raise ValueError(f"cannot read a structure from {path} (frame {index}): {err}") from None
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ValueError(f"{path} (frame {index}) holds no atoms")
    atoms.calc = None
    return atoms
