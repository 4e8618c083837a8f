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
import yaml
from conftest import Payload, error_line

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.lmdb_check import check_lmdb_file, read_header
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


# --- records past the first, corrupt pages (issue 21) -------------------------------------------------


def _without_pos(record):
    record = record.clone()
    del record.pos
    return pickle.dumps(record)


def _with(**fields):
    def make(record):
        record = record.clone()
        for key, value in fields.items():
            setattr(record, key, value)
        return pickle.dumps(record)
    return make


BAD_RECORDS = {  # kind: (the stored bytes, made from a good record; what the refusal says after "<file>, record 1")
    "garbage bytes": (lambda record: b"\x80\x04garbage",
                      " cannot be read as a fairchem record (UnpicklingError: pickle data was truncated)"),
    "a dict": (lambda record: pickle.dumps(record.to_dict()), ": holds a dict, not a fairchem record (a PyG Data)"),
    "no pos": (_without_pos, " has no pos (it holds atomic_numbers, cell, energy, fid, fixed, forces"),
    "natoms that contradicts pos": (_with(natoms=7), ": natoms is 7 but pos holds 4 atoms"),
    "a zero cell": (_with(cell=torch.zeros(1, 3, 3)),
                    ": periodic along axis 0 but the cell is degenerate in that direction (0 Å between its faces"),
    "pos of two columns": (_with(pos=torch.zeros(4, 2)), ": pos is 4x2 float32, expected floats of shape [N, 3]"),
}


def bad_later_record(folder: Path, kind: str) -> Path:
    """Four Cu cells in two LMDB files; record 1 of the second file replaced by ``kind``. Returns that file."""
    from test_structure_checks import copper, write_dataset

    write_dataset(folder, [copper() for _ in range(4)], shard_size=2)
    file = sorted(folder.glob("*.lmdb"))[1]
    env = lmdb.open(str(file), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"1", BAD_RECORDS[kind][0](pickle.loads(txn.get(b"0"))))
    env.close()
    return file


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_a_bad_later_record_is_named_by_file_and_record(kind, tmp_path):
    """Read through the project's reader (as inspect, to-aselmdb and the MD start frame do), a bad record
    past the first is one DataError naming its file and key; the good ones before it read as before."""
    file = bad_later_record(tmp_path / "data", kind)
    check_lmdb_dataset(tmp_path / "data")  # the first record of each file is fine
    dataset = SafeLmdbDataset({"src": str(tmp_path / "data")})
    assert [dataset[k].pos.shape for k in range(3)] == [(4, 3)] * 3
    with pytest.raises(DataError) as refused:
        dataset[3]
    assert str(refused.value).startswith(f"{file}, record 1{BAD_RECORDS[kind][1]}"), str(refused.value)


def validate(tmp_path: Path, val: Path, workers: int = 0, ranks: int = 1) -> subprocess.CompletedProcess:
    """main.py --mode validate of the tiny test model on ``val`` (four Cu cells to train on beside it)."""
    from test_structure_checks import copper, write_checkpoint, write_config, write_dataset

    train = write_dataset(tmp_path / "train", [copper() for _ in range(4)])
    config = write_config(tmp_path / "validate.yml", {"train": {"src": str(train)}, "val": {"src": str(val)}})
    settings = yaml.safe_load(config.read_text())
    settings["outputs"]["forces"].update(train_on_free_atoms=True, eval_on_free_atoms=True)
    config.write_text(yaml.safe_dump(settings))
    return subprocess.run(
        [sys.executable, str(MAIN_PY), "--mode", "validate", "--config-yml", str(config), "--cpu", "--num-gpus",
         str(ranks), "--checkpoint", str(write_checkpoint(tmp_path / "checkpoint.pt")), "--run-dir",
         str(tmp_path / "runs"), f"--optim.num_workers={workers}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


@pytest.mark.parametrize(("kind", "workers"), [("a dict", 0), ("natoms that contradicts pos", 2)])
def test_a_bad_later_record_to_main_validate(kind, workers, tmp_path, bad_input):
    """Met by fairchem's reader in the rank (in a DataLoader worker too): one line naming file and record."""
    file = bad_later_record(tmp_path / "bad", kind)
    proc = validate(tmp_path, tmp_path / "bad", workers)
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line.startswith(f"leignn: error: {file}, record 1{BAD_RECORDS[kind][1]}"), line
    where = " (read in a DataLoader worker)" if workers else ""
    bad_input(f"a later dataset record with {kind}{where}", "python main.py --mode validate ...", line)


def test_a_bad_later_record_in_a_launched_rank(tmp_path):
    """Two local ranks (separate processes): the rank that reads the record hands its line to the launcher."""
    file = bad_later_record(tmp_path / "bad", "no pos")
    proc = validate(tmp_path, tmp_path / "bad", ranks=2)
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line.startswith(f"leignn: error: {file}, record 1 has no pos"), line


@pytest.mark.parametrize(("kind", "command"), [("garbage bytes", "inspect"), ("no pos", "to-aselmdb")])
def test_a_bad_later_record_to_the_data_tools(kind, command, tmp_path, bad_input):
    file = bad_later_record(tmp_path / "bad", kind)
    argv = [str(tmp_path / "bad"), *([str(tmp_path / "out"), "--quiet"] if command == "to-aselmdb" else [])]
    proc = subprocess.run([sys.executable, "-m", "leignn_plugin.data", command, *argv], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert line.startswith(f"leignn-data: error: {file}, record 1{BAD_RECORDS[kind][1]}"), line
    assert not (tmp_path / "out").exists()
    bad_input(f"a later dataset record with {kind} ({command})",
              f"leignn-data {command} {'SRC OUT' if command == 'to-aselmdb' else 'DIR'}", line)


def overwrite_node_offsets(file: Path) -> int:
    """Fill the node offsets of the main database's root page of ``file`` with 0xff (a corrupt page behind
    a valid header: lmdb then reads past the end of the file, a SIGBUS); returns the page."""
    header = read_header(file)
    with open(file, "r+b") as stream:
        stream.seek(header.root * header.page_size + 16)
        stream.write(b"\xff" * 8)
    return header.root


def test_a_corrupt_page_to_main_validate(tmp_path, bad_input):
    from test_structure_checks import copper, write_dataset

    file = sorted(write_dataset(tmp_path / "corrupt", [copper() for _ in range(3)]).glob("*.lmdb"))[0]
    page = overwrite_node_offsets(file)
    proc = validate(tmp_path, tmp_path / "corrupt")
    assert proc.returncode != -7, "SIGBUS: lmdb followed the corrupt page out of the file"
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line == f"leignn: error: dataset.val.src: {file} is corrupt (page {page} has a node outside the page)"
    assert not (tmp_path / "runs").exists()
    bad_input("corrupt .lmdb page behind a valid header", "main.py --mode validate ... --dataset.val.src=DIR", line)


def test_the_page_check_passes_every_sound_file_and_refuses_what_lmdb_cannot_read(tmp_path, demo_data):
    """Every LMDB the demo writes passes; each corruption of a tree page that kills lmdb is refused."""
    files = sorted(demo_data.rglob("*.lmdb"))
    assert files
    for file in files:
        check_lmdb_file(file)
    for name, (at, data) in {"node offsets": (16, b"\xff" * 8), "page flags": (10, b"\x00\x00"),
                             "free-space bounds": (12, b"\xff\xff\x00\x00")}.items():
        copy = tmp_path / f"{name}.lmdb"
        shutil.copy(files[0], copy)
        header = read_header(copy)
        with open(copy, "r+b") as stream:
            stream.seek(header.root * header.page_size + at)
            stream.write(data)
        with pytest.raises(DataError, match=rf"^{copy} is corrupt \(page {header.root} "):
            check_lmdb_file(copy)
