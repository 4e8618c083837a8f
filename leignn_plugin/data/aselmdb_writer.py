"""Sharded ASE-LMDB (``.aselmdb``) writer: the dataset format fairchem 2.x trains on (``format: ase_db``).

Each ``data.NNNN.aselmdb`` file is what ``ase.db.connect(path)`` opens with the ``ase_db_backends``
aselmdb backend, which fairchem 2.x's ``AseDBDataset`` uses: a single-file LMDB whose keys
``"1" .. "n"`` are row ids holding zlib-compressed ASE-JSON rows, ``"nextid"`` the next id and
optionally ``"metadata"`` a JSON dict (``db.metadata``).  A row is built from ASE's own ``AtomsRow``
exactly as that backend's ``write`` builds it, but the file is written here, with ase and lmdb only:
writing then needs neither ``ase_db_backends`` (which pulls in PostgreSQL and MySQL clients and is not
installed next to fairchem 1.x) nor fairchem, and works under ase 3.25 and 3.29 alike.

A row is the frame's ``Atoms`` (positions as given, cell, pbc, tags, FixAtoms) with a
``SinglePointCalculator`` holding energy, forces and stress (Voigt, as ASE stores it), and ``data``
``{"charge": 0, "spin": 0, "sid": ..., "fid": ..., **extras}``, which fairchem 2.x copies into
``atoms.info``.  ASE stamps every row with its creation time, user and a random ``unique_id``, so unlike
the LMDB writer's, the files are not byte-identical between runs.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db.core import now
from ase.db.row import AtomsRow
from ase.io.jsonio import encode
from ase.stress import full_3x3_to_voigt_6_stress

from leignn_plugin.data.frame import ExtraValue, Frame
from leignn_plugin.data.shards import DEFAULT_SHARD_SIZE, LmdbFile, OutputFormat, WriteSummary, write_shards

FIRST_ID = 1
"""ASE database row ids start at 1."""


def frame_atoms(frame: Frame, *, with_labels: bool = True, with_stress: bool = False) -> Atoms:
    """The frame's structure with its labels in a ``SinglePointCalculator`` (none without labels)."""
    atoms = frame.atoms.copy()
    energy = frame.energy if with_labels else None
    forces = frame.forces if with_labels else None
    stress = frame.stress if with_stress else None
    if energy is not None or forces is not None or stress is not None:
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=None if energy is None else float(energy),
            forces=None if forces is None else np.asarray(forces, dtype=np.float64),
            stress=None if stress is None else full_3x3_to_voigt_6_stress(stress),
        )
    return atoms


def frame_data(frame: Frame) -> dict[str, object]:
    """The row's ``data``: neutral singlet (fairchem 2.x's ``charge``/``spin``), ids and extras."""
    extras = {key: _extra_value(value) for key, value in frame.extras.items()}
    return {"charge": 0, "spin": 0, "sid": int(frame.sid), "fid": int(frame.fid), **extras}


def _extra_value(value: ExtraValue) -> int | float | np.ndarray:
    """Scalars as Python numbers, arrays as float64 (what ASE's JSON encoder writes exactly)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return np.asarray(value, dtype=np.float64)


def _compressed(value: object) -> bytes:
    """ASE-JSON, zlib-compressed: how the aselmdb backend stores every value."""
    return zlib.compress(encode(value).encode("utf-8"))


def encode_row(atoms: Atoms, data: Mapping[str, object]) -> bytes:
    """One database row as the aselmdb backend's ``LMDBDatabase._write`` stores it."""
    row = AtomsRow(atoms)
    mtime = now()
    record = {key: value for key, value in vars(row).items() if not key.startswith("_")}
    record.update(ctime=mtime, mtime=mtime, user=os.getenv("USER"), data=dict(data))
    if atoms.constraints:
        record["constraints"] = [constraint.todict() for constraint in atoms.constraints]
    record["cell"] = np.asarray(record["cell"])
    return _compressed(record)


class _AseShard:
    """One open ``data.NNNN.aselmdb`` file receiving consecutive frames as rows 1, 2, ..."""

    def __init__(
        self, path: Path, *, with_labels: bool, with_stress: bool, metadata: Mapping[str, object] | None
    ) -> None:
        self.count = 0
        self._with_labels = with_labels
        self._with_stress = with_stress
        self._metadata = metadata
        self._file = LmdbFile(path)

    def put(self, frame: Frame) -> None:
        atoms = frame_atoms(frame, with_labels=self._with_labels, with_stress=self._with_stress)
        self._file.put(f"{FIRST_ID + self.count}", encode_row(atoms, frame_data(frame)))
        self.count += 1

    def close(self) -> None:
        self._file.put("nextid", _compressed(FIRST_ID + self.count))
        if self._metadata:
            self._file.put("metadata", _compressed(dict(self._metadata)))
        self._file.close()

    def abort(self) -> None:
        self._file.abort()


def _composition(frame: Frame) -> tuple[int, list[int]]:
    return frame.natoms, [int(z) for z in np.unique(frame.atoms.numbers)]


def write_aselmdb_shards(
    frames: Iterable[Frame],
    directory: Path,
    *,
    with_labels: bool = True,
    with_stress: bool = False,
    metadata: Mapping[str, object] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    total: int | None = None,
    desc: str = "writing",
    progress: bool = True,
) -> WriteSummary:
    """Write (already validated) frames into ``directory`` as ``.aselmdb`` shards with ``metadata.npz``.

    Args:
        frames: Frames in dataset index order.
        directory: Output directory (must not already hold shards); point it into a staging
            directory to make it atomic (see :mod:`staging`).
        with_labels: Store energy and forces (S2EF); off for initial structures without labels.
        with_stress: Store the stress.
        metadata: Stored as every shard's ``db.metadata`` (e.g. where the frames came from).
        shard_size: Maximum frames per file.
        total: Number of frames, if known, for the progress bar.
        desc: Progress-bar label.
        progress: Show a tqdm progress bar on stderr.

    Raises:
        DataError: When there is nothing to write.
    """
    return write_shards(
        frames,
        directory,
        open_shard=lambda path: _AseShard(
            path, with_labels=with_labels, with_stress=with_stress, metadata=metadata
        ),
        suffix=OutputFormat.ASELMDB.value,
        composition=_composition,
        shard_size=shard_size,
        total=total,
        desc=desc,
        progress=progress,
    )
