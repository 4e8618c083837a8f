"""Element references under fairchem 2.x, fitted and trained as fairchem's own 2.x recipes do: an option
of ``configs/fairchem2/element_refs`` written by ``leignn-data inspect``, selected with
``element_refs=NAME``, reaches the energy task (references and the referenced energies' normaliser);
``fairchem -c`` trains on E - sum_i ref(Z_i) and every prediction adds the references back. The OC20
config asks for references fitted to its training split, and says how to make them when they are missing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from ase.build import add_adsorbate, fcc111, molecule
from conftest import FITTED, REPO, data_overrides, run
from fairchem.core import FAIRChemCalculator

from leignn_plugin.fairchem2.checkpoint import load_predict_unit, read_inference_checkpoint
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.testing.commands import error_line

PROG = "leignn-fairchem2"
DEMO_ELEMENTS = (1, 6, 8, 29, 78)  # H, C, O, Cu, Pt: every element of the demo S2EF split


def fitted(configs, name: str = FITTED) -> dict:
    return yaml.safe_load((configs / "element_refs" / f"{name}.yaml").read_text())


def energy_task(tasks: list[dict]) -> dict:
    (task,) = [t for t in tasks if t["property"] == "energy"]
    return task


def test_fitted_references_are_nonzero_for_every_element_seen(fitted_configs):
    values = np.array(fitted(fitted_configs)["references"]["element_references"]["_args_"][0])
    assert values.shape == (119,)
    assert set(np.flatnonzero(values)) == set(DEMO_ELEMENTS)


def test_training_with_fitted_references_stores_them_in_the_checkpoint(direct_run, fitted_configs):
    option = fitted(fitted_configs)
    task = energy_task(read_inference_checkpoint(direct_run.checkpoint).tasks_config)
    assert task["element_references"] == option["references"]
    assert task["normalizer"]["mean"] == option["energy_mean"]
    assert task["normalizer"]["rmsd"] == option["energy_rmsd"]


def test_every_prediction_adds_the_references(direct_run, fitted_configs):
    """FAIRChemCalculator's energy less the same model's with its references zeroed is the sum of the
    references over the atoms (float64, 1e-9); the project's calculator predicts the same energy."""
    values = np.array(fitted(fitted_configs)["references"]["element_references"]["_args_"][0])
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, molecule("CO"), 1.8, "ontop")
    slab.rattle(0.02, seed=3)
    unit = load_predict_unit(direct_run.checkpoint)
    atoms = slab.copy()
    atoms.calc = FAIRChemCalculator(unit, task_name="demo")
    with_references = atoms.get_potential_energy()
    (task,) = [t for t in unit.dataset_to_tasks["demo"] if t.property == "energy"]
    task.element_references.element_references.zero_()
    atoms.calc = FAIRChemCalculator(unit, task_name="demo")
    without = atoms.get_potential_energy()
    expected = values[slab.numbers].sum()
    assert abs(expected) > 0.1
    assert with_references - without == pytest.approx(expected, abs=1e-5)
    ours = slab.copy()
    ours.calc = LEIGNNCalculator(direct_run.checkpoint)
    assert ours.get_potential_energy() == pytest.approx(with_references, abs=1e-4)


def test_the_oc20_config_asks_for_references_fitted_to_its_split(demo_data, tmp_path):
    """Missing, its option gets one line naming the command that writes it; written by that command (here
    from the demo split), the config passes the check with the fitted references in its energy task."""
    configs = tmp_path / "fairchem2"
    shutil.copytree(REPO / "configs" / "fairchem2", configs)
    config = configs / "oc20_s2ef.yaml"
    overrides = [*data_overrides(demo_data), "job.device_type=CPU"]
    done = run([PROG, "train", "-c", str(config), "--check-only", *overrides])
    option = configs / "element_refs" / "oc20_s2ef_200k.yaml"
    assert error_line(done.returncode, done.stderr, PROG) == (
        f"{PROG}: error: {config}: element_refs=oc20_s2ef_200k, but there is no {option}: fit the references "
        f"to the training split with `leignn-data inspect TRAIN_DIR --references {option}`, or train without "
        "them: element_refs=none")
    assert run([PROG, "train", "-c", str(config), "--check-only", *overrides, "element_refs=none"]).returncode == 0

    done = run(["leignn-data", "inspect", str(demo_data / "oc20_s2ef" / "train"), "--references", str(option)])
    assert done.returncode == 0, done.stderr[-2000:]
    done = run([PROG, "train", "-c", str(config), "--check-only", *overrides])
    assert done.returncode == 0, done.stderr[-2000:]

    from leignn_plugin.fairchem2.config_check import load_config

    composed = load_config(config, overrides)
    task = energy_task(list(composed.runner.train_eval_unit.tasks))
    written = fitted(configs, "oc20_s2ef_200k")
    assert task.element_references.element_references._args_[0] == written["references"][
        "element_references"]["_args_"][0]
    assert task.normalizer.rmsd == written["energy_rmsd"]


@pytest.mark.parametrize(("override", "problem"), [
    ("element_refs.references.element_references._args_=[[0.0,-1.5,0.25]]",
     "has 3 values, but the model takes atomic numbers up to 118"),
    ("element_refs.references._target_=torch.nn.Identity", "is 'torch.nn.Identity', not"),
])
def test_bad_references_are_refused_before_training(override, problem, fitted_configs, demo_data):
    done = run([PROG, "train", "-c", str(fitted_configs / "demo.yaml"), "--check-only", *data_overrides(demo_data),
                f"element_refs={FITTED}", override])
    line = error_line(done.returncode, done.stderr, PROG)
    assert f"task 'energy' element_references {problem}" in line
