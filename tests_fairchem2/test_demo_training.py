"""``fairchem -c`` end to end: the demo configs train on the demo data, and their checkpoints predict
through ``load_predict_unit`` + ``FAIRChemCalculator`` (energy, forces, and stress of the conservative
model, checked against finite differences of its own energy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.db import connect
from conftest import run
from fairchem.core import FAIRChemCalculator
from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

from leignn_plugin.core.options import OptionError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit, read_inference_checkpoint
from leignn_plugin.testing.checks import energy_difference_force
from leignn_plugin.testing.commands import error_line


def frames(data, split: str = "val") -> list:
    return [row.toatoms() for path in sorted((data / "oc20_s2ef" / split).glob("*.aselmdb"))
            for row in connect(path).select()]


@pytest.mark.parametrize("run", ["direct_run", "conservative_run"])
def test_demo_configs_train(run, request):
    losses = request.getfixturevalue(run).val_losses
    assert len(losses) == 3, losses  # one evaluation per epoch
    assert losses[-1] < losses[0], losses


def test_demo_checkpoint_predicts_through_the_calculator(direct_run, demo_data):
    saved = read_inference_checkpoint(direct_run.checkpoint)
    assert saved.model_config["backbone"]["model"] == "leignn_plugin.fairchem2.models.LEIGNNBackbone"
    calc = FAIRChemCalculator(load_predict_unit(direct_run.checkpoint), task_name="demo")
    for atoms in frames(demo_data):
        reference_energy, reference_forces = atoms.get_potential_energy(), atoms.calc.results["forces"]
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False)
        assert np.isfinite(forces).all() and forces.shape == reference_forces.shape
        # the energy normalizer puts an untrained model at the training mean (3.3 eV); these energies
        # lie within 2 eV of their labels (the spread of the labels is 1 eV)
        assert abs(energy - reference_energy) < 2.0, (energy, reference_energy)


def test_evaluate_reports_errors_through_the_calculator(direct_run, demo_data, tmp_path):
    out = tmp_path / "errors.json"
    done = run(["leignn-fairchem2", "evaluate", str(demo_data / "oc20_s2ef" / "test"), "--checkpoint",
                str(direct_run.checkpoint), "--task", "demo", "--json", str(out), "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(out.read_text())
    assert errors["structures"] == len(frames(demo_data, "test"))
    assert 0 < errors["forces_mae"] < 1 and 0 < errors["energy_mae"] < 2
    assert f"force MAE            {errors['forces_mae']:.4f} eV/Å" in done.stdout


def test_evaluate_refuses_an_unknown_task(direct_run, demo_data):
    done = run(["leignn-fairchem2", "evaluate", str(demo_data / "oc20_s2ef" / "test"), "--checkpoint",
                str(direct_run.checkpoint), "--task", "oc20"])
    assert "has no task 'oc20' (its tasks: demo)" in error_line(done.returncode, done.stderr, "leignn-fairchem2")


def test_conservative_checkpoint_gives_forces_and_stress_of_its_energy(conservative_run):
    calc = FAIRChemCalculator(load_predict_unit(conservative_run.checkpoint), task_name="demo")
    assert "stress" in calc.implemented_properties  # added by the backbone, no setting needed
    # a small periodic Cu cluster: fewer neighbours than the demo's max_neighbors (20), whose cap would
    # otherwise make the energy jump where the 20th and 21st neighbours swap
    atoms = Atoms("Cu4", positions=[[0, 0, 0], [2.4, 0.1, 0], [1.2, 2.1, 0.2], [1.1, 0.7, 2.0]],
                  cell=[[7.5, 0, 0], [0.4, 7.2, 0], [0, 0.3, 7.8]], pbc=True)
    atoms.calc = calc
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    for a, k in [(0, 0), (3, 2)]:
        assert forces[a, k] == pytest.approx(energy_difference_force(calc, atoms, a, k), abs=2e-3)
    h, energies = 1e-2, []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ np.diag([1 + sign * h, 1, 1]), scale_atoms=True)
        strained.calc = calc
        energies.append(strained.get_potential_energy())
    expected = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()  # sigma_xx = (1/V) dE/d(epsilon_xx)
    assert abs(expected) > 1e-6  # far above float32 noise here (about 5e-8)
    assert stress[0, 0] == pytest.approx(expected, rel=2e-2)
    molecule_stress = Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    molecule_stress.calc = calc
    assert not molecule_stress.get_stress().any()  # no cell: zero stress


def test_fairchems_untrained_stress_with_an_energy_mean_is_refused(conservative_run):
    settings = InferenceSettings(predict_untrained_stress={"demo"})
    with pytest.raises(OptionError, match=r"would add .* to every stress component"):
        load_predict_unit(conservative_run.checkpoint, inference_settings=settings)
