"""The project's tools in the fairchem 2.x environment: the ASE calculator and ``leignn-md`` read a 2.x
inference checkpoint (trained by ``fairchem -c`` or converted) as well as a 1.10 checkpoint, through the
one loader (``leignn_plugin.checkpoints``), and give what fairchem's own ``FAIRChemCalculator`` gives;
the same model gives the same MD trajectory here and in the 1.10 environment."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule
from ase.io import read
from conftest import REPO, run
from fairchem.core import FAIRChemCalculator
from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

from leignn_plugin.checkpoints import load_potential
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.data.aselmdb_reader import read_rows
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.testing.commands import error_line

FIXTURE = REPO / "tests" / "fixtures" / "demo_checkpoint"
VENV_1X_MD = REPO / ".venv" / "bin" / "leignn-md"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "demo_2x.pt"
    done = run(["leignn-fairchem2", "convert", str(FIXTURE / "checkpoint.pt"), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def fairchem_results(checkpoint, atoms, stress: bool = False) -> dict:
    unit = load_predict_unit(checkpoint, inference_settings=InferenceSettings(base_precision_dtype=torch.float64))
    probe = atoms.copy()
    probe.calc = FAIRChemCalculator(unit, task_name=next(iter(unit.dataset_to_tasks)))
    out = {"energy": probe.get_potential_energy(), "forces": probe.get_forces(apply_constraint=False)}
    if stress:
        out["stress"] = probe.get_stress()
    return out


def our_results(checkpoint, atoms, stress: bool = False) -> dict:
    probe = atoms.copy()
    probe.calc = LEIGNNCalculator(checkpoint, dtype="float64")
    out = {"energy": probe.get_potential_energy(), "forces": probe.get_forces(apply_constraint=False)}
    if stress:
        out["stress"] = probe.get_stress()
    return out


def assert_same(ours: dict, theirs: dict, atol: float) -> None:
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=atol, err_msg=key)


def test_calculator_reads_both_formats_as_the_same_potential(converted):
    """The 1.10 fixture and its conversion: the same numbers, and those recorded by the 1.10 calculator."""
    expected = json.loads((FIXTURE / "expected.json").read_text())["calculator_float64"]
    frames = read(FIXTURE / "frames.extxyz", ":")
    assert load_potential(converted).kind == "fairchem 2.x inference checkpoint"
    assert load_potential(FIXTURE / "checkpoint.pt").kind == "fairchem 1.10 checkpoint"
    for index, atoms in enumerate(frames):
        one, two = our_results(FIXTURE / "checkpoint.pt", atoms), our_results(converted, atoms)
        assert_same(two, one, 0.0)
        np.testing.assert_allclose(one["energy"], expected["energy"][index], rtol=0, atol=1e-10)
        np.testing.assert_allclose(one["forces"], np.asarray(expected["forces"][index]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("run_name", ["direct_run", "conservative_run"])
def test_calculator_on_a_trained_2x_checkpoint_equals_fairchems(run_name, request):
    """A checkpoint ``fairchem -c`` wrote: the project's calculator (EMA weights, task normalizers) gives
    what fairchem's predict unit gives, stress included for the conservative model."""
    checkpoint = request.getfixturevalue(run_name).checkpoint
    conservative = run_name == "conservative_run"
    slab = read(FIXTURE / "frames.extxyz", index=3)
    for atoms in (slab, slab * (1, 2, 1)):
        assert_same(our_results(checkpoint, atoms, conservative), fairchem_results(checkpoint, atoms, conservative),
                    1e-8)
    assert load_potential(checkpoint).used_ema


def test_element_references_give_the_same_energies_on_both_formats_and_fairchems(tmp_path):
    """A 1.10 checkpoint with per-element energy references (non-zero for every element): the project's
    calculator on it and on its conversion, and ``FAIRChemCalculator`` on the conversion, agree in
    float64, and the references are really added."""
    options = {"hidden_channels": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0, "max_neighbors": 30,
               "num_elements": 30, "direct_forces": False}
    torch.manual_seed(3)
    core = LEIGNNPotential(**options)
    references = torch.linspace(-3.0, -0.5, options["num_elements"] + 1)  # [Z + 1], float32 as 1.10 stores them
    normalizers = {"energy": {"mean": torch.tensor(0.25), "rmsd": torch.tensor(1.5)},
                   "forces": {"mean": torch.tensor(0.0), "rmsd": torch.tensor(1.5)}}
    src, plain = tmp_path / "refs_1x.pt", tmp_path / "plain_1x.pt"
    state = {f"module.{k}": v for k, v in core.state_dict().items()}
    for path, refs in ((src, {"energy": {"element_references": references}}), (plain, {})):
        torch.save({"config": {"model": {"name": "leignn", **options}}, "normalizers": normalizers,
                    "elementrefs": refs, "state_dict": state}, path)
    dst = tmp_path / "refs_2x.pt"
    assert run(["leignn-fairchem2", "convert", str(src), str(dst)]).returncode == 0
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
    slab.numbers[:3] = [28, 13, 8]
    for atoms in (slab, molecule("CH3CH2OH"), bulk("Ni", "fcc", a=3.52, cubic=True)):
        one = our_results(src, atoms)
        assert_same(our_results(dst, atoms), one, 1e-9)
        assert_same(fairchem_results(dst, atoms), one, 1e-9)
        added = one["energy"] - our_results(plain, atoms)["energy"]
        np.testing.assert_allclose(added, float(references.double()[atoms.numbers].sum()), rtol=0, atol=1e-9)


def md(checkpoint, out, *extra: str, command: str = "leignn-md") -> subprocess.CompletedProcess:
    args = [command, "run", "--checkpoint", str(checkpoint), "--structure", str(FIXTURE / "frames.extxyz"),
            "--index", "3", "--out", str(out), "--no-progress", *extra]
    if command == "leignn-md":
        return run(args)
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("ensemble", ["nve", "nvt-langevin", "npt"])
def test_md_runs_and_is_analyzed_from_a_2x_checkpoint(conservative_run, tmp_path, ensemble):
    """``leignn-md run`` and ``leignn-md analyze`` on the checkpoint ``fairchem -c`` trained (NPT needs
    the stress the conservative model gives)."""
    out = tmp_path / ensemble
    done = md(conservative_run.checkpoint, out, "--ensemble", ensemble, "--steps", "6", "--interval", "2",
              "--temperature", "300")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read(out / "md.traj", ":")) == 4
    info = json.loads((out / "run.json").read_text())
    assert info["conservative"] and info["used_ema"]
    analyzed = run(["leignn-md", "analyze", str(out)])
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    for name in ("rdf.png", "energy.png", "stability.png"):
        assert (out / "analysis" / name).stat().st_size > 0


@pytest.mark.skipif(not VENV_1X_MD.exists(), reason="needs the fairchem 1.10 environment (make install)")
def test_md_trajectory_is_the_same_in_both_environments(converted, tmp_path):
    """The 1.10 checkpoint in the 1.10 environment and its conversion here: the same NVE trajectory in
    float64 (positions to 1e-9 Å after 30 steps)."""
    settings = ["--ensemble", "nve", "--steps", "30", "--interval", "10", "--dtype", "float64", "--seed", "4",
                "--temperature", "600"]
    here = md(converted, tmp_path / "fairchem2", *settings)
    assert here.returncode == 0, here.stderr[-3000:]
    there = md(FIXTURE / "checkpoint.pt", tmp_path / "fairchem1", *settings, command=str(VENV_1X_MD))
    assert there.returncode == 0, there.stderr[-3000:]
    ours, theirs = read(tmp_path / "fairchem2" / "md.traj", ":"), read(tmp_path / "fairchem1" / "md.traj", ":")
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.get_potential_energy(), b.get_potential_energy(), rtol=0, atol=1e-9)
    assert np.abs(ours[-1].positions - ours[0].positions).max() > 1e-3  # the atoms did move


@pytest.mark.skipif(not VENV_1X_MD.exists(), reason="needs the fairchem 1.10 environment (make install)")
def test_a_2x_checkpoint_in_the_1x_environment_is_one_line(converted, tmp_path, bad_input):
    """fairchem 1.10 cannot unpickle a 2.x inference checkpoint: the 1.10 environment says where to read it."""
    done = md(converted, tmp_path / "run", "--steps", "1", command=str(VENV_1X_MD))
    line = error_line(done.returncode, done.stderr, "leignn-md")
    assert line == (f"leignn-md: error: {converted} is a fairchem 2.x inference checkpoint, which this environment "
                    "cannot read (it has no fairchem-core 2.x); load it where fairchem-core 2.x is installed "
                    "(make install-fairchem2)")
    assert not (tmp_path / "run").exists()
    bad_input("fairchem 2.x checkpoint in the fairchem 1.10 environment",
              "leignn-md run --checkpoint CKPT_2X.pt ... (.venv)", line.replace(str(converted.parent), "…"))


def test_oc20_submission_from_fairchem2_predictions(direct_run, demo_data, tmp_path):
    """``leignn-fairchem2 predict`` writes each split's S2EF predictions as ``main.py --mode predict`` does;
    ``leignn-submission`` checks them (every frame of the ASE-LMDB split predicted once) and merges the
    four splits; the energies are the project calculator's for the same rows."""
    split = demo_data / "oc20_s2ef" / "test"
    files = {}
    for name in ("id", "ood_ads", "ood_cat", "ood_both"):
        files[name] = tmp_path / f"{name}.npz"
        done = run(["leignn-fairchem2", "predict", str(split), "--checkpoint", str(direct_run.checkpoint),
                    "--task", "demo", "--out", str(files[name]), "--quiet"])
        assert done.returncode == 0, done.stderr[-3000:]
    args = [f"--{name.replace('_', '-')}={path}" for name, path in files.items()]
    done = run(["leignn-submission", *args, f"--id-lmdb={split}", "--out", str(tmp_path / "submission.npz")])
    assert done.returncode == 0, done.stderr[-3000:]
    merged = np.load(tmp_path / "submission.npz")
    assert {f"{name}_{key}" for name in files for key in ("ids", "energy", "forces", "chunk_idx")} <= set(merged)
    frames = [atoms for atoms, _ in read_rows(sorted(split.glob("*.aselmdb"))[0])]
    calc = LEIGNNCalculator(direct_run.checkpoint)
    for index, atoms in enumerate(frames[:3]):
        atoms.calc = calc
        assert merged["id_energy"][index] == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
    partial = tmp_path / "partial.npz"
    with np.load(files["id"]) as full:
        np.savez(partial, ids=full["ids"][1:], energy=full["energy"][1:], forces=full["forces"][full["chunk_idx"][0]:],
                 chunk_idx=full["chunk_idx"][1:] - full["chunk_idx"][0])
    args[0] = f"--id={partial}"
    done = run(["leignn-submission", *args, f"--id-lmdb={split}", "--out", str(tmp_path / "refused.npz")])
    assert done.returncode != 0 and "1 frames of the split are not predicted" in done.stderr
    assert not (tmp_path / "refused.npz").exists()
