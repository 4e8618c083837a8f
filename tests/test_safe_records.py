"""Dataset records: a crafted LMDB record never runs code, in main.py's ranks, its up-front check or the
project's own readers; real records (fairchem's AtomsToGraphs, leignn-data) read exactly as before."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
import torch
from conftest import Payload, error_line

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.safe_records import (
    RecordRefused,
    SafeLmdbDataset,
    check_lmdb_dataset,
    loads,
    safe_records,
)
from leignn_plugin.workflows.fairchem_runs import MAIN_PY, REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "configs" / "demo" / "leignn_s2ef.yml"


def crafted_copy(demo_data: Path, folder: Path, record: object) -> Path:
    """The demo val split with its first record replaced by ``record`` pickled."""
    shutil.copytree(demo_data / "oc20_s2ef" / "val", folder)
    file = sorted(folder.glob("*.lmdb"))[0]
    env = lmdb.open(str(file), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps(record))
    env.close()
    return folder


def test_every_demo_record_reads_as_with_pickle(demo_data):
    """loads() builds the same objects as pickle.loads for every record leignn-data writes."""
    count = 0
    for file in sorted(demo_data.rglob("*.lmdb")):
        env = lmdb.open(str(file), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            for key, value in txn.cursor():
                safe, plain = loads(value), pickle.loads(value)
                if key == b"length":
                    assert safe == plain
                    continue
                fields, expected = safe.to_dict(), plain.to_dict()
                assert sorted(fields) == sorted(expected)
                for name, value in expected.items():
                    if isinstance(value, torch.Tensor):
                        assert torch.equal(fields[name], value), name
                    else:
                        assert fields[name] == value, name
                count += 1
        env.close()
    assert count > 200


def test_fairchem_written_records_read(tmp_path):
    """Records pickled the way fairchem's AtomsToGraphs writes them (plain tensors, PyG 2 Data)."""
    from test_distributed import write_slab_lmdb

    folder = write_slab_lmdb(tmp_path / "slabs", 3, seed=0)
    check_lmdb_dataset(folder)
    dataset = SafeLmdbDataset({"src": str(folder)})
    assert len(dataset) == 3 and dataset[2].pos.shape == (13, 3)


@pytest.mark.parametrize("gadget", ["payload", "getattr"])
def test_loads_refuses_code(gadget, payload_marker):
    if gadget == "payload":
        data = pickle.dumps(Payload(payload_marker))
    else:  # getattr on an allowed class, the first link of a chain to arbitrary functions
        data = (b"\x80\x04cbuiltins\ngetattr\ncnumpy\ndtype\nX\x08\x00\x00\x00__init__\x86R.")
    with pytest.raises(RecordRefused) as refused:
        loads(data)
    assert "refused to unpickle" in str(refused.value)
    assert not payload_marker.exists()


def test_safe_records_is_scoped_and_trusted_leaves_pickle(demo_data):
    from fairchem.core.datasets import lmdb_dataset

    assert lmdb_dataset.pickle is pickle
    with safe_records():
        assert lmdb_dataset.pickle.loads is loads
    with safe_records(trusted=True):
        assert lmdb_dataset.pickle is pickle
    assert lmdb_dataset.pickle is pickle


def test_crafted_record_to_main_validate(demo_data, tmp_path, payload_marker, bad_input):
    crafted = crafted_copy(demo_data, tmp_path / "crafted", Payload(payload_marker))
    proc = subprocess.run(
        [sys.executable, str(MAIN_PY), "--mode", "validate", "--config-yml", str(DEMO_CONFIG), "--cpu",
         "--run-dir", str(tmp_path / "runs"), f"--dataset.train.src={demo_data / 'oc20_s2ef' / 'train'}",
         f"--dataset.val.src={crafted}", f"--dataset.test.src={demo_data / 'oc20_s2ef' / 'test'}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert "dataset.val.src" in line and "record 0" in line and "refused to unpickle" in line
    assert not payload_marker.exists()
    assert not (tmp_path / "runs").exists()  # refused before any rank started
    bad_input("crafted dataset record (code in the pickle)", "python main.py --mode validate ...", line)


def test_crafted_record_to_inspect(demo_data, tmp_path, payload_marker, bad_input):
    crafted = crafted_copy(demo_data, tmp_path / "crafted", Payload(payload_marker))
    proc = subprocess.run([sys.executable, "-m", "leignn_plugin.data", "inspect", str(crafted)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert "record 0" in line and "refused to unpickle" in line
    assert not payload_marker.exists()
    bad_input("crafted dataset record (inspect)", "leignn-data inspect DIR", line)


def test_crafted_later_record_is_refused_when_read(demo_data, tmp_path, payload_marker):
    """A payload past the first record (not seen by the up-front check) is refused as it is read."""
    folder = crafted_copy(demo_data, tmp_path / "crafted", None)
    file = sorted(folder.glob("*.lmdb"))[0]
    env = lmdb.open(str(file), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", txn.get(b"1"))
        txn.put(b"2", pickle.dumps(Payload(payload_marker)))
    env.close()
    check_lmdb_dataset(folder)
    dataset = SafeLmdbDataset({"src": str(folder)})
    dataset[1]
    with pytest.raises(DataError):
        dataset[2]
    assert not payload_marker.exists()
