"""Frames from fairchem 1.x LMDB datasets (``leignn-data to-aselmdb``), read through the safe reader.

Records are opened with :func:`safe_records.open_lmdb_dataset` (headers checked, nothing but data
unpickled) and turned back into :class:`Frame` objects: ``pos``, ``atomic_numbers`` (uint8 or OC20's
float32), ``cell``, ``pbc`` (all periodic when absent, as fairchem assumes), ``tags``, ``fixed`` (as
FixAtoms), energy and forces under either convention's names (``energy``/``y``, ``forces``/``force``,
see :mod:`conventions`), ``stress``, ``sid`` (the record's index when absent), ``fid`` (0 when absent)
and the IS2RE fields ``y_init``, ``y_relaxed`` and ``pos_relaxed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms
from numpy.typing import NDArray

from leignn_plugin.data.conventions import ENERGY_KEYS, FORCES_KEYS
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import ExtraValue, Frame
from leignn_plugin.data.inspect import find_datasets
from leignn_plugin.data.safe_records import SafeLmdbDataset, opened_lmdb_dataset

IS2RE_FIELDS: tuple[str, ...] = ("y_init", "y_relaxed", "pos_relaxed")
"""Per-record fields of OC20 IS2RE/IS2RS datasets, kept as extras."""


def find_lmdb_datasets(src: Path) -> list[Path]:
    """``src`` when it is an ``.lmdb`` file or a directory of them, else every such directory below it."""
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    return [src] if src.is_file() else find_datasets(src)


class LmdbRecords:
    """The records of one open LMDB dataset, as frames in index order."""

    def __init__(self, path: Path, dataset: SafeLmdbDataset) -> None:
        self.path = path
        self._dataset = dataset
        if len(dataset) == 0:
            raise DataError(f"{path}: dataset is empty")
        first = self._record(0)
        self.has_labels = any(key in first for key in (*ENERGY_KEYS, *FORCES_KEYS))
        self.has_stress = "stress" in first

    def __len__(self) -> int:
        return len(self._dataset)

    def _record(self, index: int) -> Any:
        """Record ``index``, checked (``safe_records.check_record``; errors name its file and key)."""
        return self._dataset[index]

    def frames(self) -> Iterator[Frame]:
        """Every record as a frame; ``origin`` is ``"<file>, record <key>"``."""
        for index in range(len(self)):
            yield record_to_frame(self._record(index), origin=self._dataset.record_name(index), index=index)


@contextmanager
def open_lmdb_records(path: Path) -> Iterator[LmdbRecords]:
    """Open one LMDB dataset (file or directory) safely; its files are closed on leaving."""
    with opened_lmdb_dataset(path) as dataset:
        yield LmdbRecords(path, dataset)


def record_to_frame(data: Any, *, origin: str, index: int) -> Frame:
    """One fairchem record (PyG ``Data``) as a frame; missing or malformed fields are one-line errors."""
    numbers = np.rint(_array(data, "atomic_numbers", origin)).astype(np.int64).reshape(-1)
    natoms = len(numbers)
    positions = _shaped(data, "pos", (natoms, 3), origin)
    cell = _shaped(data, "cell", (3, 3), origin) if "cell" in data else np.zeros((3, 3))
    pbc = _shaped(data, "pbc", (3,), origin).astype(bool) if "pbc" in data else np.ones(3, dtype=bool)
    tags = _shaped(data, "tags", (natoms,), origin).astype(np.int64) if "tags" in data else None
    fixed = _shaped(data, "fixed", (natoms,), origin).astype(bool) if "fixed" in data else None
    atoms = Atoms(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        tags=tags,
        constraint=FixAtoms(mask=fixed) if fixed is not None and fixed.any() else None,
    )
    energy_key = next((key for key in ENERGY_KEYS if key in data), None)
    forces_key = next((key for key in FORCES_KEYS if key in data), None)
    return Frame(
        atoms=atoms,
        energy=None if energy_key is None else float(_array(data, energy_key, origin).reshape(-1)[0]),
        forces=None if forces_key is None else _shaped(data, forces_key, (natoms, 3), origin),
        stress=_shaped(data, "stress", (3, 3), origin) if "stress" in data else None,
        sid=_integer(data, "sid", index, origin),
        fid=_integer(data, "fid", 0, origin),
        origin=origin,
        extras={key: _extra(data, key, origin) for key in IS2RE_FIELDS if key in data},
    )


def _array(data: Any, key: str, origin: str) -> NDArray[np.float64]:
    """A numeric field as a float64 array (tensors, arrays and Python numbers alike)."""
    value = data[key]
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().double().numpy()
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{origin}: {key} is not numeric ({type(value).__name__})") from None


def _shaped(data: Any, key: str, shape: tuple[int, ...], origin: str) -> NDArray[np.float64]:
    """A field reshaped to ``shape`` (fairchem stores cell as [1, 3, 3], pbc and stress with a batch axis)."""
    array = _array(data, key, origin)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{origin}: {key} has shape {tuple(array.shape)}, expected {shape}")
    return array.reshape(shape)


def _integer(data: Any, key: str, default: int, origin: str) -> int:
    """An integer id field (int, or a one-element tensor or array), ``default`` when absent."""
    if key not in data:
        return default
    value = data[key]
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{origin}: {key} {value!r} is not an integer id")
    return int(array.reshape(-1)[0])


def _extra(data: Any, key: str, origin: str) -> ExtraValue:
    """An IS2RE field: a scalar stays a float, anything else becomes a float64 array."""
    array = _array(data, key, origin)
    return float(array.reshape(-1)[0]) if array.size == 1 else array
