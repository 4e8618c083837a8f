"""The sharded LMDB writer: fairchem's layout (length key, metadata.npz) and reproducible bytes."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import lmdb
import numpy as np
import torch
from fairchem.core.datasets import LmdbDataset
from torch_geometric.data import Data

from leignn_plugin.data.lmdb_writer import write_lmdb_shards


def make_samples(count: int) -> list[Data]:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for index in range(count):
        natoms = 2 + index % 4
        samples.append(
            Data(
                pos=torch.rand(natoms, 3, generator=generator),
                atomic_numbers=torch.full((natoms,), 1 + index % 3, dtype=torch.uint8),
                natoms=natoms,
                energy=float(index),
                forces=torch.rand(natoms, 3, generator=generator),
                sid=index,
            )
        )
    return samples


def test_shards_length_key_metadata_and_order(tmp_path: Path) -> None:
    data = make_samples(7)
    summary = write_lmdb_shards(data, tmp_path / "ds", shard_size=3, progress=False)
    assert (summary.samples, summary.shards, summary.elements) == (7, 3, (1, 2, 3))
    shards = sorted((tmp_path / "ds").glob("*.lmdb"))
    assert [p.name for p in shards] == ["data.0000.lmdb", "data.0001.lmdb", "data.0002.lmdb"]
    assert not list((tmp_path / "ds").glob("*-lock"))
    lengths = []
    for path in shards:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            lengths.append(pickle.loads(txn.get(b"length")))
            assert pickle.loads(txn.get(b"0")).sid in {0, 3, 6}
        env.close()
    assert lengths == [3, 3, 1]

    dataset = LmdbDataset({"src": str(tmp_path / "ds")})
    assert len(dataset) == 7
    for index, original in enumerate(data):
        sample = dataset[index]
        assert sample.sid == index and sample.energy == float(index)
        torch.testing.assert_close(sample.pos, original.pos)
        torch.testing.assert_close(sample.forces, original.forces)
        assert sample.atomic_numbers.dtype == torch.uint8
    natoms = np.load(tmp_path / "ds" / "metadata.npz")["natoms"]
    assert natoms.dtype == np.int64 and natoms.tolist() == [d.natoms for d in data]
    assert dataset.get_metadata("natoms", [0, 6]) == [2, 4]


def test_identical_samples_give_identical_bytes(tmp_path: Path) -> None:
    write_lmdb_shards(make_samples(5), tmp_path / "a", shard_size=2, progress=False)
    write_lmdb_shards(make_samples(5), tmp_path / "b", shard_size=2, progress=False)
    for path in sorted((tmp_path / "a").iterdir()):
        twin = tmp_path / "b" / path.name
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(twin.read_bytes()).digest()
