"""ASE-LMDB (.aselmdb) output for fairchem 2.x: from-ase, from-md17 and to-aselmdb round trips, read back
row by row as ASE's database reads them, and (when .venv-fairchem2 exists) by fairchem 2.x itself."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.db.row import AtomsRow
from ase.io.jsonio import decode
from ase.io.trajectory import Trajectory
from ase.stress import voigt_6_to_full_3x3_stress
from conftest import Payload, error_line
from fairchem.core.datasets import LmdbDataset
from torch_geometric.data import Data

from leignn_plugin.data.cli import main
from leignn_plugin.data.lmdb_check import read_header
from leignn_plugin.data.lmdb_writer import write_lmdb_shards
from leignn_plugin.data.md17_source import load_md17

REPO = Path(__file__).resolve().parents[1]
FAIRCHEM2_PYTHON = REPO / ".venv-fairchem2" / "bin" / "python"


def _value(txn: lmdb.Transaction, key: str) -> object:
    return decode(zlib.decompress(txn.get(key.encode("ascii"))).decode("utf-8"))


def read_rows(directory: Path) -> list[AtomsRow]:
    """Every row of a dataset directory in index order, decoded as the aselmdb backend's ``_get_row``."""
    rows = []
    for path in sorted(directory.glob("*.aselmdb")):
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            for row_id in range(1, _value(txn, "nextid")):
                record = _value(txn, f"{row_id}")
                rows.append(AtomsRow({**record, "id": row_id}))
        env.close()
    return rows


def db_metadata(path: Path) -> object:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        value = _value(txn, "metadata")
    env.close()
    return value


def labelled(atoms: Atoms, calc: EMT) -> Atoms:
    atoms.calc = calc
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    return atoms


def slab_images(n_frames: int, seed: int = 0) -> list[Atoms]:
    """Cu(111)+O slabs with tags, FixAtoms on the bottom layer, EMT labels and an atom outside the cell."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_frames):
        slab = fcc111("Cu", size=(2, 2, 2), vacuum=5.0, periodic=True)
        slab.set_tags(np.where(slab.get_tags() == 2, 0, 1))
        slab += Atoms("O", positions=[slab.positions[-1] + [0.0, 0.0, 1.8]], tags=[2])
        slab.set_constraint(FixAtoms(mask=slab.get_tags() == 0))
        slab.positions += rng.normal(0.0, 0.05, size=slab.positions.shape)
        slab.positions[0] -= [0.3, 0.0, 0.0]
        images.append(labelled(slab, EMT()))
    return images


def bulk_images(n_frames: int, seed: int = 1) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_frames):
        atoms = bulk("Cu", cubic=True)
        atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
        images.append(labelled(atoms, EMT()))
    return images


def write_traj(path: Path, images: list[Atoms]) -> Path:
    with Trajectory(path, "w") as trajectory:
        for atoms in images:
            trajectory.write(atoms)
    return path


def assert_row_matches(row: AtomsRow, atoms: Atoms, *, sid: int, fid: int) -> None:
    """Geometry, labels, tags, FixAtoms and ids of one row, exactly as the source frame had them."""
    read = row.toatoms()
    np.testing.assert_array_equal(read.numbers, atoms.numbers)
    np.testing.assert_array_equal(read.positions, atoms.positions)  # as given, not wrapped
    np.testing.assert_array_equal(read.cell.array, atoms.cell.array)
    np.testing.assert_array_equal(read.pbc, atoms.pbc)
    np.testing.assert_array_equal(read.get_tags(), atoms.get_tags())
    fixed = [c.get_indices().tolist() for c in read.constraints if isinstance(c, FixAtoms)]
    expected = [c.get_indices().tolist() for c in atoms.constraints if isinstance(c, FixAtoms)]
    assert fixed == expected
    assert read.get_potential_energy() == atoms.get_potential_energy()
    np.testing.assert_array_equal(read.get_forces(apply_constraint=False), atoms.get_forces(apply_constraint=False))
    np.testing.assert_array_equal(read.get_stress(), atoms.get_stress())
    assert row.data == {"charge": 0, "spin": 0, "sid": sid, "fid": fid}


def test_from_ase_round_trip(tmp_path: Path) -> None:
    slabs, crystals = slab_images(3), bulk_images(2)
    files = [write_traj(tmp_path / "slab.traj", slabs), write_traj(tmp_path / "bulk.traj", crystals)]
    out = tmp_path / "ds"
    argv = ["from-ase", *map(str, files), "--out", str(out), "--output-format", "aselmdb", "--shard-size", "2",
            "--quiet"]
    assert main(argv) == 0
    names = ["data.0000.aselmdb", "data.0001.aselmdb", "data.0002.aselmdb", "metadata.npz"]
    assert sorted(p.name for p in out.iterdir()) == names  # fairchem 2.x opens every file as a database
    rows = read_rows(out)
    expected = [(atoms, 0, fid) for fid, atoms in enumerate(slabs)] + [(a, 1, fid) for fid, a in enumerate(crystals)]
    assert len(rows) == len(expected)
    for row, (atoms, sid, fid) in zip(rows, expected):
        assert_row_matches(row, atoms, sid=sid, fid=fid)
    natoms = np.load(out / "metadata.npz")["natoms"]
    assert natoms.dtype == np.int64 and natoms.tolist() == [len(atoms) for atoms, _, _ in expected]
    sources = [{"sid": 0, "path": str(files[0])}, {"sid": 1, "path": str(files[1])}]
    assert db_metadata(out / "data.0002.aselmdb") == {"sources": sources}


def test_no_stress(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    path = write_traj(tmp_path / "bulk.traj", bulk_images(2))
    assert main(["from-ase", str(path), "--out", str(out), "--output-format", "aselmdb", "--no-stress", "--quiet"]) == 0
    rows = read_rows(out)
    assert [row.data["fid"] for row in rows] == [0, 1]
    assert all("stress" not in row and "energy" in row for row in rows)


def test_md17_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = bulk("Cu", cubic=True)
    positions = base.positions[None] + rng.normal(0.0, 0.05, size=(12, len(base), 3))
    np.savez(tmp_path / "md17.npz", R=positions, E=rng.normal(-500.0, 1.0, size=(12, 1)),
             F=rng.normal(0.0, 3.0, size=(12, len(base), 3)), z=base.numbers)
    out = tmp_path / "md17"
    argv = ["from-md17", str(tmp_path / "md17.npz"), "--out", str(out), "--train", "6", "--val", "2", "--test", "3",
            "--output-format", "aselmdb", "--quiet"]
    assert main(argv) == 0
    splits = json.loads((out / "splits.json").read_text())
    arrays = load_md17(tmp_path / "md17.npz", unit="kcal/mol")
    for name, size in (("train", 6), ("val", 2), ("test", 3)):
        assert sorted(p.name for p in (out / name).iterdir()) == ["data.0000.aselmdb", "metadata.npz"]
        rows = read_rows(out / name)
        frames = list(arrays.frames(splits[name]))
        assert len(rows) == len(frames) == size
        for row, frame in zip(rows, frames):
            atoms = row.toatoms()
            assert atoms.get_potential_energy() == frame.energy
            np.testing.assert_array_equal(atoms.get_forces(), frame.forces)
            np.testing.assert_array_equal(atoms.positions, frame.atoms.positions)
            assert not atoms.pbc.any() and "stress" not in row
            assert row.data == {"charge": 0, "spin": 0, "sid": frame.sid, "fid": frame.fid}


def test_lmdb_to_aselmdb(tmp_path: Path) -> None:
    traj = write_traj(tmp_path / "slab.traj", slab_images(3))
    lmdbs = tmp_path / "lmdb"
    assert main(["from-ase", str(traj), "--out", str(lmdbs / "train"), "--convention", "oc20", "--shard-size", "2",
                 "--quiet"]) == 0
    assert main(["from-ase", str(traj), "--out", str(lmdbs / "val"), "--quiet"]) == 0
    out = tmp_path / "converted"
    assert main(["to-aselmdb", str(lmdbs), str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]
    for split, (energy_key, forces_key) in {"train": ("y", "force"), "val": ("energy", "forces")}.items():
        records = LmdbDataset({"src": str(lmdbs / split)})
        rows = read_rows(out / split)
        assert len(rows) == len(records) == 3
        assert np.load(out / split / "metadata.npz")["natoms"].tolist() == [9, 9, 9]
        for index, row in enumerate(rows):
            record, atoms = records[index], row.toatoms()
            assert atoms.get_potential_energy() == float(record[energy_key])
            np.testing.assert_array_equal(atoms.get_forces(apply_constraint=False), record[forces_key].double().numpy())
            np.testing.assert_array_equal(atoms.positions, record.pos.double().numpy())
            np.testing.assert_array_equal(atoms.get_stress(voigt=False), record.stress.double().numpy().reshape(3, 3))
            np.testing.assert_array_equal(atoms.cell.array, record.cell[0].double().numpy())
            np.testing.assert_array_equal(atoms.pbc, record.pbc[0].numpy())
            np.testing.assert_array_equal(atoms.numbers, record.atomic_numbers.long().numpy())
            np.testing.assert_array_equal(atoms.get_tags(), record.tags.numpy())
            assert atoms.constraints[0].get_indices().tolist() == record.fixed.nonzero().view(-1).tolist()
            assert row.data == {"charge": 0, "spin": 0, "sid": record.sid, "fid": record.fid}

    single = tmp_path / "single"
    assert main(["to-aselmdb", str(lmdbs / "train" / "data.0001.lmdb"), str(single), "--quiet"]) == 0
    assert [row.data["fid"] for row in read_rows(single)] == [2]


def test_record_without_pbc_ids_or_tags_is_periodic(tmp_path: Path) -> None:
    """fairchem treats records without ``pbc`` as periodic; missing ids become (index, 0)."""
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.5, 0.0]], dtype=torch.float64)
    samples = [
        Data(pos=positions + shift, atomic_numbers=torch.tensor([8, 1, 1], dtype=torch.uint8), natoms=3,
             cell=10.0 * torch.eye(3).view(1, 3, 3), energy=-1.0 - shift, forces=torch.zeros(3, 3))
        for shift in (0.0, 0.25)
    ]
    write_lmdb_shards(samples, tmp_path / "lmdb", progress=False)
    assert main(["to-aselmdb", str(tmp_path / "lmdb"), str(tmp_path / "out"), "--quiet"]) == 0
    rows = read_rows(tmp_path / "out")
    assert [row.data for row in rows] == [{"charge": 0, "spin": 0, "sid": i, "fid": 0} for i in (0, 1)]
    assert [row.toatoms().get_potential_energy() for row in rows] == [-1.0, -1.25]
    assert all(row.toatoms().pbc.all() and not row.toatoms().get_tags().any() for row in rows)


def failing(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> str:
    """Run the CLI; one error line, exit status 2, and neither the output nor a staging directory left."""
    status = main(argv)
    line = error_line(status, capsys.readouterr().err, "leignn-data")
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return line


def test_bad_inputs_give_one_line_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    line = failing(["to-aselmdb", str(tmp_path / "missing"), str(out)], capsys, out)
    assert line == f"leignn-data: error: {tmp_path / 'missing'}: no such file or directory"

    images = bulk_images(4)
    images[2].calc = SinglePointCalculator(images[2], energy=float("nan"), forces=np.zeros((4, 3)),
                                           stress=np.zeros(6))
    path = write_traj(tmp_path / "run.traj", images)
    argv = ["from-ase", str(path), "--out", str(out), "--output-format", "aselmdb", "--shard-size", "1", "--quiet"]
    assert "run.traj: frame 2: energy is nan" in failing(argv, capsys, out)

    argv = ["from-ase", str(path), "--out", str(out), "--output-format", "aselmdb", "--convention", "oc20"]
    assert "--convention oc20 applies to --output-format lmdb only" in failing(argv, capsys, out)


def test_crafted_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], payload_marker: Path) -> None:
    path = write_traj(tmp_path / "bulk.traj", bulk_images(2))
    assert main(["from-ase", str(path), "--out", str(tmp_path / "lmdb"), "--quiet"]) == 0
    env = lmdb.open(str(tmp_path / "lmdb" / "data.0000.lmdb"), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps(Payload(payload_marker)))
    env.close()
    out = tmp_path / "out"
    line = failing(["to-aselmdb", str(tmp_path / "lmdb"), str(out)], capsys, out)
    assert "record 0" in line and "refused to unpickle" in line
    assert not payload_marker.exists()


# --- files from elsewhere: truncated, malformed rows (issue 21) ---------------------------------------


def aselmdb_dataset(folder: Path, n_frames: int = 12) -> Path:
    """``n_frames`` labelled Cu cells as one ``.aselmdb`` shard in ``folder``; returns the shard."""
    traj = write_traj(folder.parent / f"{folder.name}.traj", bulk_images(n_frames))
    assert main(["from-ase", str(traj), "--out", str(folder), "--output-format", "aselmdb", "--quiet"]) == 0
    return sorted(folder.glob("*.aselmdb"))[0]


def inspect(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leignn_plugin.data", "inspect", str(folder)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_truncated_aselmdb_to_inspect(tmp_path: Path, bad_input) -> None:
    """Checked from its header like an .lmdb file, before lmdb maps it (a SIGBUS otherwise)."""
    shard = aselmdb_dataset(tmp_path / "truncated")
    page = read_header(shard).page_size
    with open(shard, "r+b") as stream:  # at a page boundary: lmdb reads a page wholly past the end, a SIGBUS
        stream.truncate(shard.stat().st_size // 2 // page * page)
    proc = inspect(tmp_path / "truncated")
    assert proc.returncode != -7, "SIGBUS: lmdb mapped the truncated file"
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert line.startswith(f"leignn-data: error: {shard} is truncated (") and "are in use)" in line, line
    bad_input("truncated .aselmdb (inspect)", "leignn-data inspect DIR", line)


def _huge_array(record: dict) -> dict:
    record["positions"] = {"__ndarray__": [[10**12, 3], "float64", [0.0, 0.0, 0.0]]}
    return record


MALFORMED_ROWS = {  # kind: (row 2's JSON from the written one, what inspect says after "<file>: row 2")
    "a JSON list": (lambda record: [1, 2, 3], ": it is a JSON list, not an ASE database row (an object)"),
    "an array declaring 10**12 rows": (_huge_array, ": an array declares the shape (1000000000000, 3) but holds 3 values"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_ROWS))
def test_malformed_aselmdb_row_to_inspect(kind: str, tmp_path: Path, bad_input) -> None:
    """One line naming file and row; a declared shape is never allocated before its values fill it."""
    shard = aselmdb_dataset(tmp_path / "rows", 4)
    env = lmdb.open(str(shard), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        record = json.loads(zlib.decompress(txn.get(b"2")))
        txn.put(b"2", zlib.compress(json.dumps(MALFORMED_ROWS[kind][0](record)).encode()))
    env.close()
    proc = inspect(tmp_path / "rows")
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert line == f"leignn-data: error: {shard}: row 2{MALFORMED_ROWS[kind][1]}"
    bad_input(f".aselmdb row holding {kind}", "leignn-data inspect DIR", line)


FAIRCHEM2_CHECK = """
import json, sys, torch
from fairchem.core.datasets.ase_datasets import AseDBDataset
from leignn_plugin.data.cli import main

src, traj, written = sys.argv[1:]
dataset = AseDBDataset({"src": src, "a2g_args": {"r_data_keys": ["charge", "spin"], "target_dtype": torch.float64}})
frames = []
for index in range(len(dataset)):
    data, atoms = dataset[index], dataset.get_atoms(index)
    frames.append({"energy": data.energy.item(), "forces": data.forces.tolist(), "stress": data.stress[0].tolist(),
                   "cell": data.cell[0].tolist(), "pbc": data.pbc[0].tolist(), "fixed": data.fixed.tolist(),
                   "sid": data.sid, "charge": data.charge.item(), "spin": data.spin.item(),
                   "tags": atoms.get_tags().tolist(), "positions": atoms.positions.tolist(),
                   "natoms": int(dataset.get_metadata("natoms", index))})
status = main(["from-ase", traj, "--out", written, "--output-format", "aselmdb", "--quiet"])
print(json.dumps({"frames": frames, "status": status}))
"""


@pytest.mark.skipif(not FAIRCHEM2_PYTHON.exists(), reason="no .venv-fairchem2 (fairchem 2.x) next to the repository")
def test_fairchem2_reads_and_writes_aselmdb(tmp_path: Path) -> None:
    """fairchem 2.x's AseDBDataset reads what this environment wrote, exactly; the writer runs there too."""
    slabs, crystals = slab_images(2), bulk_images(2)
    files = [write_traj(tmp_path / "slab.traj", slabs), write_traj(tmp_path / "bulk.traj", crystals)]
    out = tmp_path / "ds"
    argv = ["from-ase", *map(str, files), "--out", str(out), "--output-format", "aselmdb", "--shard-size", "3",
            "--quiet"]
    assert main(argv) == 0
    written = tmp_path / "written"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(FAIRCHEM2_PYTHON), "-c", FAIRCHEM2_CHECK, str(out), str(files[0]), str(written)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [(a, 0, fid) for fid, a in enumerate(slabs)] + [(a, 1, fid) for fid, a in enumerate(crystals)]
    assert len(result["frames"]) == len(expected)
    for frame, (atoms, sid, fid) in zip(result["frames"], expected):
        assert frame["energy"] == atoms.get_potential_energy()
        np.testing.assert_array_equal(frame["forces"], atoms.get_forces(apply_constraint=False))
        np.testing.assert_array_equal(frame["stress"], voigt_6_to_full_3x3_stress(atoms.get_stress()))
        np.testing.assert_array_equal(frame["cell"], atoms.cell.array)
        np.testing.assert_array_equal(frame["pbc"], atoms.pbc)
        np.testing.assert_array_equal(frame["positions"], atoms.positions)
        np.testing.assert_array_equal(frame["tags"], atoms.get_tags())
        fixed = np.zeros(len(atoms), dtype=int)
        for constraint in atoms.constraints:
            fixed[constraint.get_indices()] = 1
        assert frame["fixed"] == fixed.tolist()
        assert (frame["sid"], frame["charge"], frame["spin"], frame["natoms"]) == ([f"{sid}-frame-{fid}"], 0, 0,
                                                                                   len(atoms))
    assert result["status"] == 0
    rows = read_rows(written)
    assert len(rows) == len(slabs)
    for fid, (row, atoms) in enumerate(zip(rows, slabs)):
        assert_row_matches(row, atoms, sid=0, fid=fid)
