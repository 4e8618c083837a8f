"""Bad input under fairchem 2.x gets one line, ``leignn-fairchem2: error: ...``, exit status 2, before any
work starts: an unknown model option (with the closest name), a missing dataset, a head that does not fit
the backbone, a checkpoint that is not LEIGNN, a LAMMPS run over several MPI ranks."""

from __future__ import annotations

import shutil

import pytest
from conftest import BIN, REPO, data_overrides, run

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
