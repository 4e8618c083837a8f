"""Bad input under fairchem 2.x gets one line, ``leignn-fairchem2: error: ...``, exit status 2, before any
work starts: an unknown model option (with the closest name), a missing dataset, a head that does not fit
the backbone, a checkpoint that is not LEIGNN, a LAMMPS run over several MPI ranks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import BIN, REPO, data_overrides, run

from leignn_plugin.data.lmdb_check import read_header
from leignn_plugin.testing.commands import error_line

PROG = "leignn-fairchem2"
CONFIG = "configs/fairchem2/demo.yaml"


def check(overrides: list[str], demo_data) -> str:
    done = run([PROG, "train", "-c", CONFIG, *data_overrides(demo_data), "--check-only", *overrides])
    return error_line(done.returncode, done.stderr, PROG)


def test_the_demo_config_passes_the_check(demo_data):
    done = run([PROG, "train", "-c", CONFIG, *data_overrides(demo_data), "--check-only"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{CONFIG}: ok"


def test_unknown_option_names_the_closest(demo_data):
    line = check(["+backbone.hiden_channels=32"], demo_data)
    assert "unknown option runner.train_eval_unit.model.backbone.hiden_channels" in line
    assert "did you mean runner.train_eval_unit.model.backbone.hidden_channels" in line


def test_wrong_option_value(demo_data):
    line = check(["backbone.hidden_channels=33"], demo_data)
    assert "hidden_channels must be an even positive integer, got 33" in line


def test_missing_dataset(demo_data, tmp_path):
    line = check([f"train_src={tmp_path}/nowhere/train"], demo_data)
    assert f"{tmp_path}/nowhere/train does not exist" in line


def test_empty_dataset_folder(demo_data, tmp_path):
    shutil.copytree(demo_data / "oc20_s2ef", tmp_path / "data")
    for shard in (tmp_path / "data" / "val").iterdir():
        shard.unlink()
    line = check([f"val_src={tmp_path}/data/val"], demo_data)
    assert f"{tmp_path}/data/val holds no dataset files" in line


def test_conservative_head_on_a_direct_backbone(demo_data):
    line = check(["forces=conservative", "backbone.direct_forces=true", "backbone.regress_stress=false"], demo_data)
    assert "LEIGNNConservativeHead needs a backbone with regress_forces: true and direct_forces: false" in line


def test_broken_yaml(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("defaults:\n  - base\nepochs: [1, 2\n")
    done = run([PROG, "train", "-c", str(config)])
    assert f"{config}: not valid YAML" in error_line(done.returncode, done.stderr, PROG)


def test_missing_config(tmp_path):
    done = run([PROG, "train", "-c", str(tmp_path / "none.yaml")])
    assert f"config not found: {tmp_path}/none.yaml" in error_line(done.returncode, done.stderr, PROG)


def test_misspelt_override(demo_data):
    line = check(["epoch=3"], demo_data)
    assert f"{CONFIG}: Could not override 'epoch'" in line


def test_interpolation_to_nowhere(demo_data):
    line = check(["epochs=${nowhere}"], demo_data)
    assert f"{CONFIG}: cannot compose the config" in line and "nowhere" in line


@pytest.mark.skipif(not (BIN / "mpiexec").exists(), reason="needs mpich's mpiexec (make install-fairchem2)")
def test_lammps_over_two_mpi_ranks_is_refused(tmp_path):
    done = run(["mpiexec", "-n", "2", str(BIN / PROG), "lammps", str(REPO / "configs/fairchem2/lammps/nve_cu_slab.in"),
                "--checkpoint", str(tmp_path / "never_read.pt"), "--task", "demo"], cwd=tmp_path)
    line = error_line(done.returncode, done.stderr, PROG)
    assert "run with one rank (this run has 2)" in line


# --- truncated .aselmdb files and far-flung atoms (issue 21) -----------------------------------------


def truncated_split(demo_data: Path, folder: Path) -> Path:
    """The demo val split with its first shard cut at the page boundary halfway through (reading every
    row, lmdb reads a page wholly past the end of the file: a SIGBUS); returns that shard."""
    shutil.copytree(demo_data / "oc20_s2ef" / "val", folder)
    shard = sorted(folder.glob("*.aselmdb"))[0]
    page = read_header(shard).page_size
    with open(shard, "r+b") as stream:
        stream.truncate(shard.stat().st_size // 2 // page * page)
    return shard


def far_atom_split(demo_data: Path, folder: Path) -> Path:
    """The demo val split with row 2 of its first shard made a slab (periodic along x and y only) and its
    atom 1 moved 1e8 Å along z (vesin's SIGFPE); returns that shard."""
    shutil.copytree(demo_data / "oc20_s2ef" / "val", folder)
    shard = sorted(folder.glob("*.aselmdb"))[0]
    env = lmdb.open(str(shard), subdir=False, map_size=1 << 30, lock=False)
    with env.begin(write=True) as txn:
        row = json.loads(zlib.decompress(txn.get(b"2")))
        row["pbc"]["__ndarray__"][2] = [True, True, False]
        row["positions"]["__ndarray__"][2][1 * 3 + 2] = 1e8
        txn.put(b"2", zlib.compress(json.dumps(row).encode()))
    env.close()
    return shard


FAR_ATOM = "atoms 0 and 1 are 1e+08 Å apart along z, which is not periodic; a structure spans at most 10000 Å"


@pytest.mark.parametrize("check_only", [True, False])
def test_truncated_aselmdb_to_the_config_check(check_only, demo_data, tmp_path, bad_input):
    """train --check-only said such data were fine, and the run then died of SIGBUS in fairchem's reader;
    train checks the same before it starts."""
    shard = truncated_split(demo_data, tmp_path / "val")
    done = run([PROG, "train", "-c", CONFIG, *data_overrides(demo_data), f"val_src={tmp_path}/val",
                f"job.run_dir={tmp_path}/runs", *(["--check-only"] if check_only else [])])
    assert done.returncode != -7, "SIGBUS: lmdb mapped the truncated file"
    line = error_line(done.returncode, done.stderr, PROG)
    assert line.startswith(f"leignn-fairchem2: error: {CONFIG}: runner.") and f": {shard} is truncated (" in line
    flag = " --check-only" if check_only else ""
    bad_input(f"truncated .aselmdb in a fairchem 2.x config{' (check only)' if check_only else ''}",
              f"leignn-fairchem2 train -c {CONFIG} val_src=DIR{flag}", line)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The 1.10 demo checkpoint of the fixtures as a 2.x inference checkpoint (task oc20)."""
    out = tmp_path_factory.mktemp("converted") / "leignn_oc20.pt"
    done = run([PROG, "convert", str(REPO / "tests" / "fixtures" / "demo_checkpoint" / "checkpoint.pt"), str(out),
                "--dataset", "oc20"])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_truncated_aselmdb_to_evaluate(demo_data, converted, tmp_path, bad_input):
    shard = truncated_split(demo_data, tmp_path / "val")
    done = run([PROG, "evaluate", str(tmp_path / "val"), "--checkpoint", str(converted), "--task", "oc20", "--quiet"])
    assert done.returncode != -7, "SIGBUS: lmdb mapped the truncated file"
    line = error_line(done.returncode, done.stderr, PROG)
    assert line.startswith(f"{PROG}: error: {shard} is truncated (") and "are in use)" in line, line
    bad_input("truncated .aselmdb (evaluate)", f"{PROG} evaluate DIR --checkpoint CKPT --task T", line)


def test_far_atom_to_evaluate(demo_data, converted, tmp_path, bad_input):
    """The row is named: the backbone's refusal alone says only "structure 0 of the batch"."""
    shard = far_atom_split(demo_data, tmp_path / "val")
    done = run([PROG, "evaluate", str(tmp_path / "val"), "--checkpoint", str(converted), "--task", "oc20", "--quiet"])
    assert done.returncode != -8, "SIGFPE in the neighbour search"
    line = error_line(done.returncode, done.stderr, PROG)
    assert line.startswith(f"{PROG}: error: {shard}: row 2: structure 0 of the batch: {FAR_ATOM}"), line
    bad_input("an atom 1e8 Å away in an .aselmdb row (evaluate)", f"{PROG} evaluate DIR --checkpoint CKPT --task T",
              line)


def test_training_on_a_far_atom_ends_with_one_line(demo_data, tmp_path, bad_input):
    """Met in fairchem's training loop: one line naming the batch's structure, not a SIGFPE."""
    far_atom_split(demo_data, tmp_path / "val")
    done = run([PROG, "train", "-c", CONFIG, f"train_src={tmp_path}/val", f"val_src={tmp_path}/val", "epochs=1",
                f"job.run_dir={tmp_path}/runs"])
    assert done.returncode != -8, "SIGFPE in the neighbour search"
    line = error_line(done.returncode, done.stderr, PROG)
    assert line.startswith(f"{PROG}: error: structure ") and " of the batch (sid " in line and FAR_ATOM in line, line
    bad_input("an atom 1e8 Å away in a fairchem 2.x training row", f"{PROG} train -c CFG train_src=DIR", line)


def test_truncated_aselmdb_to_from_ase(demo_data, tmp_path, bad_input):
    """ase.io.read maps an .aselmdb file too (ase_db_backends): checked like every other LMDB first."""
    shard = truncated_split(demo_data, tmp_path / "val")
    done = run(["leignn-data", "from-ase", str(shard), "--out", str(tmp_path / "out"), "--quiet"])
    assert done.returncode != -7, "SIGBUS: ase.io.read mapped the truncated file"
    line = error_line(done.returncode, done.stderr, "leignn-data")
    assert line.startswith(f"leignn-data: error: {shard} is truncated ("), line
    assert not (tmp_path / "out").exists()
    bad_input("truncated .aselmdb given to from-ase", "leignn-data from-ase FILE.aselmdb --out DIR", line)


def test_fairchem_calculator_refuses_a_far_atom(converted):
    """The 2.x backbone searches through the same graph package: one StructureError, not a SIGFPE."""
    code = textwrap.dedent(f"""
        from ase.build import molecule
        from fairchem.core import FAIRChemCalculator
        from leignn_plugin.errors import StructureError
        from leignn_plugin.fairchem2.checkpoint import load_predict_unit
        atoms = molecule("CO")
        atoms.positions[1] = [0.0, 1e8, 0.0]
        atoms.calc = FAIRChemCalculator(load_predict_unit("{converted}"), task_name="oc20")
        try:
            atoms.get_potential_energy()
        except StructureError as err:
            print(err)
        """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip().splitlines()[-1].startswith(
        "structure 0 of the batch: atoms 0 and 1 are 1e+08 Å apart along y, which is not periodic")


def test_a_real_slab_and_a_boxed_molecule_pass_the_2x_checks(tmp_path):
    """Written for fairchem 2.x from a periodic slab and a molecule in a 600 Å box, both read back."""
    slab = bulk("Cu", cubic=True) * (3, 3, 3)
    boxed = bulk("Cu", cubic=True)
    boxed.center(vacuum=300.0)
    boxed.pbc = False
    frames = []
    for atoms in (slab, boxed):
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    write(tmp_path / "frames.extxyz", frames)
    done = run(["leignn-data", "from-ase", str(tmp_path / "frames.extxyz"), "--out", str(tmp_path / "ds"),
                "--output-format", "aselmdb", "--quiet"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert run(["leignn-data", "inspect", str(tmp_path / "ds")]).returncode == 0
