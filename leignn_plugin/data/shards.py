"""What every dataset writer shares: the output formats, single-file LMDB shards and ``metadata.npz``.

Both formats are a directory of ``data.NNNN.<suffix>`` files (sorted by name = index order), each a
single-file LMDB, plus ``metadata.npz`` whose ``natoms`` array (index order across shards) is what
fairchem's atom-count load balancing reads (``load_balancing: atoms`` in 1.x, the
``MaxAtomDistributedBatchSampler`` in 2.x).  The writers differ only in how one record is encoded
(:mod:`lmdb_writer`, :mod:`aselmdb_writer`); callers make a directory atomic by pointing it into a
staging directory (see :mod:`staging`).  Nothing here needs torch_geometric or fairchem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol, TypeVar

import lmdb
import numpy as np
from tqdm import tqdm

from leignn_plugin.data.errors import DataError

DEFAULT_SHARD_SIZE = 10_000
"""Records per ``data.NNNN.*`` file."""

MAP_SIZE = 1 << 40
"""LMDB address space (sparse; the file only grows to what is written)."""

COMMIT_EVERY = 1_000
"""Records per write transaction."""

Item = TypeVar("Item", contravariant=True)


class OutputFormat(str, Enum):
    """The dataset format a converter writes; the value is also the shard files' suffix."""

    LMDB = "lmdb"
    """fairchem 1.x ``LmdbDataset``: pickled PyG ``Data`` records."""
    ASELMDB = "aselmdb"
    """fairchem 2.x ``AseDBDataset`` (``format: ase_db``): ASE database rows."""


@dataclass(frozen=True)
class WriteSummary:
    """What one call of a shard writer produced."""

    directory: Path
    samples: int
    atoms: int
    shards: int
    elements: tuple[int, ...]


class LmdbFile:
    """One single-file LMDB being written: batched transactions, no lock file, synced on close."""

    def __init__(self, path: Path) -> None:
        self._puts = 0
        self._env = lmdb.open(
            str(path), map_size=MAP_SIZE, subdir=False, lock=False, meminit=True, map_async=True
        )
        self._txn = self._env.begin(write=True)

    def put(self, key: str, value: bytes) -> None:
        self._txn.put(key.encode("ascii"), value)
        self._puts += 1
        if self._puts % COMMIT_EVERY == 0:
            self._txn.commit()
            self._txn = self._env.begin(write=True)

    def close(self) -> None:
        self._txn.commit()
        self._env.sync(True)
        self._env.close()

    def abort(self) -> None:
        self._txn.abort()
        self._env.close()


class Shard(Protocol[Item]):
    """One open shard file receiving consecutive records (``count`` of them so far)."""

    count: int

    def put(self, item: Item) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def write_shards(
    items: Iterable[Item],
    directory: Path,
    *,
    open_shard: Callable[[Path], Shard[Item]],
    suffix: str,
    composition: Callable[[Item], tuple[int, Iterable[int]]],
    shard_size: int = DEFAULT_SHARD_SIZE,
    total: int | None = None,
    desc: str = "writing",
    progress: bool = True,
) -> WriteSummary:
    """Stream ``items`` into ``directory/data.NNNN.<suffix>`` shards and write ``metadata.npz``.

    Args:
        items: Records in dataset index order.
        directory: Output directory (created if needed; must not already hold shards).
        open_shard: Opens a new shard file at the given path.
        suffix: File suffix of the shards (an :class:`OutputFormat` value).
        composition: Number of atoms and atomic numbers of one record.
        shard_size: Maximum records per shard.
        total: Number of records, if known, for the progress bar.
        desc: Progress-bar label.
        progress: Show a tqdm progress bar on stderr.

    Raises:
        DataError: A non-positive shard size, or nothing to write.
    """
    if shard_size < 1:
        raise DataError(f"shard size must be positive, got {shard_size}")
    directory.mkdir(parents=True, exist_ok=True)
    natoms: list[int] = []
    elements: set[int] = set()
    shard: Shard[Item] | None = None
    shards = 0
    try:
        for item in tqdm(items, total=total, desc=desc, unit=" frames", disable=not progress, leave=False):
            if shard is None or shard.count == shard_size:
                if shard is not None:
                    shard.close()
                shard = open_shard(directory / f"data.{shards:04d}.{suffix}")
                shards += 1
            shard.put(item)
            count, numbers = composition(item)
            natoms.append(count)
            elements.update(numbers)
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
