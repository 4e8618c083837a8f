"""Sharded LMDB writer in the layout fairchem's ``LmdbDataset`` reads.

A dataset is a directory of ``data.NNNN.lmdb`` files (sorted by name = index order), each holding
keys ``"0" .. "n-1"`` (pickled ``Data`` objects) and a pickled int under ``"length"``, plus a
``metadata.npz`` whose ``natoms`` array (index order across shards) enables
``load_balancing: atoms``.

Samples are pickled as fairchem expects (``pickle.loads`` gives the ``Data`` object back), except
that tensors are stored as numpy arrays rebuilt by ``torch.from_numpy``: torch's own tensor
pickling embeds memory addresses, and this keeps the files byte-identical for identical samples.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np
import torch
from torch_geometric.data import Data
from tqdm import tqdm

from leignn_plugin.data.errors import DataError

DEFAULT_SHARD_SIZE = 10_000
"""Samples per ``data.NNNN.lmdb`` file."""

MAP_SIZE = 1 << 40
"""LMDB address space (sparse; the file only grows to what is written)."""

COMMIT_EVERY = 1_000
"""Samples per write transaction."""


@dataclass(frozen=True)
class WriteSummary:
    """What one call to :func:`write_lmdb_shards` produced."""

    directory: Path
    samples: int
    atoms: int
    shards: int
    elements: tuple[int, ...]


class _DeterministicPickler(pickle.Pickler):
    """Pickler writing tensors as ``torch.from_numpy(array)``, which pickles reproducibly."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, torch.Tensor):
            return torch.from_numpy, (obj.detach().cpu().numpy(),)
        return NotImplemented


def dumps_sample(data: Data) -> bytes:
    """Pickle one sample reproducibly; ``pickle.loads`` restores ordinary tensors."""
    buffer = io.BytesIO()
    _DeterministicPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(data)
    return buffer.getvalue()


class _ShardWriter:
    """One open ``data.NNNN.lmdb`` file receiving consecutive samples."""

    def __init__(self, path: Path) -> None:
        self.count = 0
        self._env = lmdb.open(
            str(path), map_size=MAP_SIZE, subdir=False, lock=False, meminit=True, map_async=True
        )
        self._txn = self._env.begin(write=True)

    def put(self, data: Data) -> None:
        self._txn.put(f"{self.count}".encode("ascii"), dumps_sample(data))
        self.count += 1
        if self.count % COMMIT_EVERY == 0:
            self._txn.commit()
            self._txn = self._env.begin(write=True)

    def close(self) -> None:
        self._txn.put(b"length", pickle.dumps(self.count, protocol=pickle.HIGHEST_PROTOCOL))
        self._txn.commit()
        self._env.sync(True)
        self._env.close()

    def abort(self) -> None:
        self._txn.abort()
        self._env.close()


def write_lmdb_shards(
    samples: Iterable[Data],
    directory: Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    total: int | None = None,
    desc: str = "writing",
    progress: bool = True,
) -> WriteSummary:
    """Write samples into ``directory`` as sharded LMDBs with ``metadata.npz``.

    The directory is created if needed; callers make it atomic by pointing it into a staging
    directory (see :mod:`staging`).

    Args:
        samples: Samples in dataset index order.
        directory: Output directory (must not already hold LMDBs).
        shard_size: Maximum samples per LMDB file.
        total: Number of samples, if known, for the progress bar.
        desc: Progress-bar label.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        Counts of what was written.

    Raises:
        DataError: When there is nothing to write.
    """
    if shard_size < 1:
        raise DataError(f"shard size must be positive, got {shard_size}")
    directory.mkdir(parents=True, exist_ok=True)
    natoms: list[int] = []
    elements: set[int] = set()
    shard: _ShardWriter | None = None
    shards = 0
    try:
        for data in tqdm(samples, total=total, desc=desc, unit=" frames", disable=not progress, leave=False):
            if shard is None or shard.count == shard_size:
                if shard is not None:
                    shard.close()
                shard = _ShardWriter(directory / f"data.{shards:04d}.lmdb")
                shards += 1
            shard.put(data)
            natoms.append(int(data.natoms))
            elements.update(int(z) for z in data.atomic_numbers.unique().tolist())
    except BaseException:
        if shard is not None:
            shard.abort()
        raise
    if shard is None:
        raise DataError(f"{directory}: no frames to write")
    shard.close()
    np.savez(directory / "metadata.npz", natoms=np.asarray(natoms, dtype=np.int64))
    return WriteSummary(
        directory=directory,
        samples=len(natoms),
        atoms=int(sum(natoms)),
        shards=shards,
        elements=tuple(sorted(elements)),
    )
