"""Sharded LMDB writer in the layout fairchem 1.x's ``LmdbDataset`` reads.

Each ``data.NNNN.lmdb`` file holds keys ``"0" .. "n-1"`` (pickled ``Data`` objects) and a pickled
int under ``"length"``; the directory layout and ``metadata.npz`` are :mod:`shards`'.

Samples are pickled as fairchem expects (``pickle.loads`` gives the ``Data`` object back), except
that tensors are stored as numpy arrays rebuilt by ``torch.from_numpy``: torch's own tensor
pickling embeds memory addresses, and this keeps the files byte-identical for identical samples.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from leignn_plugin.data.shards import (
    DEFAULT_SHARD_SIZE,
    LmdbFile,
    OutputFormat,
    WriteSummary,
    write_shards,
)

if TYPE_CHECKING:
    from torch_geometric.data import Data


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
        self._file = LmdbFile(path)

    def put(self, data: Data) -> None:
        self._file.put(f"{self.count}", dumps_sample(data))
        self.count += 1

    def close(self) -> None:
        self._file.put("length", pickle.dumps(self.count, protocol=pickle.HIGHEST_PROTOCOL))
        self._file.close()

    def abort(self) -> None:
        self._file.abort()


def _composition(data: Data) -> tuple[int, list[int]]:
    return int(data.natoms), [int(z) for z in data.atomic_numbers.unique().tolist()]


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
    return write_shards(
        samples,
        directory,
        open_shard=_ShardWriter,
        suffix=OutputFormat.LMDB.value,
        composition=_composition,
        shard_size=shard_size,
        total=total,
        desc=desc,
        progress=progress,
    )
