"""One trained model serves both hosts: a checkpoint of the 1.10 target (``main.py`` training) converted with
``leignn-fairchem2 convert`` predicts what the 1.10 code predicted from it (the fixture's recorded
``main.py --mode predict`` outputs in float32, and the 1.10 calculator's in float64)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule
from ase.io import read
from conftest import REPO, run
from fairchem.core import FAIRChemCalculator
from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.testing.commands import error_line

FIXTURE = REPO / "tests" / "fixtures" / "demo_checkpoint"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "leignn_oc20.pt"
    done = run(["leignn-fairchem2", "convert", str(FIXTURE / "checkpoint.pt"), str(out), "--dataset", "oc20"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out}" in done.stdout
    return out


def predict(checkpoint, dtype: torch.dtype) -> tuple[list[float], list[np.ndarray]]:
    settings = InferenceSettings(base_precision_dtype=dtype)
    calc = FAIRChemCalculator(load_predict_unit(checkpoint, inference_settings=settings), task_name="oc20")
    energies, forces = [], []
    for atoms in read(FIXTURE / "frames.extxyz", ":"):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces(apply_constraint=False))
    return energies, forces


def test_converted_checkpoint_predicts_as_main_py_did(converted):
    expected = json.loads((FIXTURE / "expected.json").read_text())["main_predict"]
    energies, forces = predict(converted, torch.float32)
    order = [int(sid.split("_")[1]) for sid in expected["ids"]]  # main.py names frame k of the file "0_k"
    np.testing.assert_allclose([energies[k] for k in order], np.ravel(expected["energy"]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([forces[k] for k in order]),
                               np.concatenate([np.asarray(f).reshape(-1, 3) for f in expected["forces"]]),
                               rtol=0, atol=1e-5)


def test_converted_checkpoint_agrees_with_the_1x_calculator_in_float64(converted):
    expected = json.loads((FIXTURE / "expected.json").read_text())["calculator_float64"]
    energies, forces = predict(converted, torch.float64)
    np.testing.assert_allclose(energies, expected["energy"], rtol=0, atol=1e-9)
    for ours, theirs in zip(forces, expected["forces"]):
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=0, atol=1e-9)


def test_convert_refuses_a_model_that_is_not_leignn(tmp_path):
    saved = torch.load(FIXTURE / "checkpoint.pt", weights_only=True)
    saved["config"]["model"]["name"] = "painn"
    foreign = tmp_path / "painn.pt"
    torch.save(saved, foreign)
    out = tmp_path / "out.pt"
    done = run(["leignn-fairchem2", "convert", str(foreign), str(out)])
    line = error_line(done.returncode, done.stderr, "leignn-fairchem2")
    assert "holds a 'painn' model, not LEIGNN" in line
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_a_1x_checkpoint_is_not_loaded_as_a_2x_one(tmp_path):
    done = run(["leignn-fairchem2", "lammps", str(REPO / "configs/fairchem2/lammps/nve_cu_slab.in"),
                "--checkpoint", str(FIXTURE / "checkpoint.pt"), "--task", "oc20"], cwd=tmp_path)
    line = error_line(done.returncode, done.stderr, "leignn-fairchem2")
    assert "is a fairchem 1.x checkpoint; convert it first with leignn-fairchem2 convert" in line


def test_converted_element_references_reach_fairchems_calculator(tmp_path):
    """A 1.10 checkpoint with per-element energy references (non-zero for every element) converts, and
    ``FAIRChemCalculator`` adds them: its energies exceed those of the same weights without references by
    the sum of each structure's references, with the same forces."""
    options = {"hidden_channels": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0, "max_neighbors": 30,
               "num_elements": 30}
    torch.manual_seed(0)
    core = LEIGNNPotential(**options)
    references = torch.linspace(-3.0, -0.5, options["num_elements"] + 1, dtype=torch.float64)  # [Z + 1]
    normalizers = {"energy": {"mean": torch.tensor(0.25), "rmsd": torch.tensor(1.5)},
                   "forces": {"mean": torch.tensor(0.0), "rmsd": torch.tensor(1.5)}}
    state = {f"module.{k}": v for k, v in core.state_dict().items()}
    units = {}
    for name, elementrefs in (("plain", {}), ("refs", {"energy": {"element_references": references}})):
        src, dst = tmp_path / f"{name}_1x.pt", tmp_path / f"{name}.pt"
        torch.save({"config": {"model": {"name": "leignn", **options}}, "normalizers": normalizers,
                    "elementrefs": elementrefs, "state_dict": state}, src)
        done = run(["leignn-fairchem2", "convert", str(src), str(dst), "--dataset", "oc20"])
        assert done.returncode == 0, done.stderr[-3000:]
        units[name] = load_predict_unit(dst, inference_settings=InferenceSettings(base_precision_dtype=torch.float64))
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
    slab.numbers[:3] = [28, 13, 8]
    structures = [slab, molecule("CH3CH2OH"), bulk("Ni", "fcc", a=3.52, cubic=True)]
    for atoms in structures:
        results = {}
        for name, unit in units.items():
            atoms.calc = FAIRChemCalculator(unit, task_name="oc20")
            results[name] = (atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False))
        expected = float(references[atoms.numbers].sum())
        assert abs(expected) > 1.0
        np.testing.assert_allclose(results["refs"][0] - results["plain"][0], expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(results["refs"][1], results["plain"][1], rtol=0, atol=1e-12)
