"""Every config of configs/fairchem2 passes the check on the demo data, and the MD17 config trains a
conservative LEIGNN on molecules (no cell, no periodicity) whose calculator forces are -dE/dx."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from conftest import REPO, data_overrides, run
from fairchem.core import FAIRChemCalculator

from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.testing.checks import energy_difference_force

CONFIGS = sorted(p.name for p in (REPO / "configs" / "fairchem2").glob("*.yaml") if p.name != "base.yaml")


def molecule_overrides(data) -> list[str]:
    # float statistics of the demo molecules (leignn-data inspect DIR/molecules/train)
    return [f"train_src={data}/molecules/train", f"val_src={data}/molecules/val", "energy_mean=-125.17",
            "energy_rmsd=0.977", "forces_rmsd=0.977"]


@pytest.mark.parametrize("config", CONFIGS)
def test_config_passes_the_check(config, demo_data):
    overrides = molecule_overrides(demo_data) if config == "md17.yaml" else data_overrides(demo_data)
    if config == "oc20_s2ef.yaml":  # its references are fitted to OC20 (test_element_references.py)
        overrides.append("element_refs=none")
    done = run(["leignn-fairchem2", "train", "-c", f"configs/fairchem2/{config}", "--check-only", *overrides])
    assert done.returncode == 0, done.stderr[-3000:]


def test_md17_config_trains_a_conservative_molecular_model(demo_data, tmp_path):
    done = run(["leignn-fairchem2", "train", "-c", "configs/fairchem2/md17.yaml", *molecule_overrides(demo_data),
                "forces=conservative", "epochs=1", f"job.run_dir={tmp_path}", "job.device_type=CPU"])
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = done.stdout.strip().splitlines()[-1].removeprefix("inference checkpoint: ")
    calc = FAIRChemCalculator(load_predict_unit(checkpoint), task_name="md17")
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    forces = atoms.get_forces()
    for a, k in [(0, 0), (2, 1), (8, 2)]:
        assert forces[a, k] == pytest.approx(energy_difference_force(calc, atoms, a, k), abs=5e-3)
    assert np.abs(forces).max() > 1e-3
