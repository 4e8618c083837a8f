"""``leignn-data inspect`` on datasets whose statistics are known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.trajectory import Trajectory
from fairchem.core.modules.normalization.element_references import create_element_references

from leignn_plugin.data.cli import main

REFERENCES = {1: -13.6, 6: -1029.5, 8: -2041.25}


def linear_dataset(tmp_path: Path, n_frames: int = 30, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """Frames whose energies are exactly sum_Z n_Z * REFERENCES[Z]; forces random."""
    rng = np.random.default_rng(seed)
    energies, forces, natoms, counts = [], [], [], []
    with Trajectory(tmp_path / "linear.traj", "w") as trajectory:
        for _ in range(n_frames):
            numbers = rng.choice(list(REFERENCES), size=int(rng.integers(2, 9)))
            numbers[0] = 6
            grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
            positions = 1.5 * grid[rng.permutation(len(grid))[: len(numbers)]].astype(np.float64)
            energy = float(sum(REFERENCES[int(z)] for z in numbers))
            force = rng.normal(0.2, 1.5, size=(len(numbers), 3))
            atoms = Atoms(numbers=numbers, positions=positions)
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=force)
            trajectory.write(atoms)
            energies.append(energy)
            forces.append(force.astype(np.float32).astype(np.float64))
            natoms.append(len(numbers))
            counts.append({z: int((numbers == z).sum()) for z in REFERENCES})
    out = tmp_path / "ds"
    assert main(["from-ase", str(tmp_path / "linear.traj"), "--out", str(out), "--quiet"]) == 0
    return out, {"energies": np.array(energies), "forces": np.concatenate(forces), "natoms": np.array(natoms),
                 "counts": counts}


def test_inspect_statistics_and_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth = linear_dataset(tmp_path)
    capsys.readouterr()
    json_path, refs_path = tmp_path / "stats.json", tmp_path / "refs.npz"
    assert main(["inspect", str(out), "--json", str(json_path), "--references", str(refs_path)]) == 0
    printed = capsys.readouterr().out
    stats = json.loads(json_path.read_text())["datasets"][str(out)]

    assert stats["samples"] == 30 and stats["atoms"] == int(truth["natoms"].sum())
    assert stats["energy_key"] == "energy" and stats["forces_key"] == "forces"
    energies, forces = truth["energies"], truth["forces"]
    assert stats["energy"]["mean"] == pytest.approx(energies.mean(), rel=1e-12)
    assert stats["energy"]["std"] == pytest.approx(energies.std(), rel=1e-9)
    assert stats["energy_per_atom"]["mean"] == pytest.approx((energies / truth["natoms"]).mean(), rel=1e-12)
    assert stats["forces"]["mean"] == pytest.approx(forces.mean(), abs=1e-9)
    assert stats["forces"]["std"] == pytest.approx(forces.std(), rel=1e-9)
    assert stats["forces"]["rms"] == pytest.approx(np.sqrt(np.mean(forces**2)), rel=1e-9)
    assert stats["max_force_norm"] == pytest.approx(np.linalg.norm(forces, axis=1).max(), rel=1e-9)
    assert stats["natoms"]["min"] == truth["natoms"].min() and stats["natoms"]["max"] == truth["natoms"].max()
    assert sum(row[2] for row in stats["natoms_histogram"]) == 30

    fitted = {element["number"]: element["reference"] for element in stats["elements"]}
    assert fitted == pytest.approx(REFERENCES, abs=1e-6)
    assert stats["reference_residual"]["std"] == pytest.approx(0.0, abs=1e-6)
    assert stats["reference_rank"] == 3
    for element in stats["elements"]:
        assert element["atoms"] == sum(c[element["number"]] for c in truth["counts"])

    module = create_element_references(file=str(refs_path))
    vector = module.element_references.numpy()
    assert vector.shape == (119,)
    np.testing.assert_allclose(vector[[1, 6, 8]], [REFERENCES[1], REFERENCES[6], REFERENCES[8]], atol=1e-6)
    assert np.count_nonzero(vector) == 3

    assert "reference (eV)" in printed and "natoms histogram" in printed
    assert f"rmsd: {np.sqrt(np.mean(forces**2)):.6f}" in printed


def test_inspect_finds_split_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = linear_dataset(tmp_path, n_frames=6)
    root = tmp_path / "root"
    root.mkdir()
    out.rename(root / "train")
    second, _ = linear_dataset(tmp_path, n_frames=4, seed=1)
    second.rename(root / "val")
    capsys.readouterr()
    assert main(["inspect", str(root)]) == 0
    printed = capsys.readouterr().out
    assert f"dataset {root / 'train'}" in printed and f"dataset {root / 'val'}" in printed
    assert main(["inspect", str(root), "--references", str(tmp_path / "r.npz")]) == 2
    assert "holds 2 datasets" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing")]) == 2


def test_inspect_writes_references_as_a_fairchem2_config_option(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``--references NAME.yaml``: an option of configs/fairchem2/element_refs holding the task's
    ``ElementReferences`` (the fitted float64 values, every digit) and the referenced energies'
    normaliser; ``.yml`` is refused (Hydra reads options only from ``.yaml``)."""
    out, _ = linear_dataset(tmp_path)
    option = tmp_path / "element_refs" / "linear.yaml"
    option.parent.mkdir()
    assert main(["inspect", str(out), "--references", str(option), "--json", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())["datasets"][str(out)]
    written = yaml.safe_load(option.read_text())
    node = written["references"]
    assert node["_target_"] == "fairchem.core.modules.normalization.element_references.ElementReferences"
    assert node["element_references"]["_target_"] == "torch.DoubleTensor"
    (values,) = node["element_references"]["_args_"]
    assert len(values) == 119
    assert {z: values[z] for z in range(119) if values[z] != 0.0} == {
        e["number"]: e["reference"] for e in stats["elements"]}
    assert written["energy_mean"] == stats["reference_residual"]["mean"]
    assert written["energy_rmsd"] == max(stats["reference_residual"]["std"], 1e-6)
    assert "element_refs=linear" in option.read_text()

    capsys.readouterr()
    assert main(["inspect", str(out), "--references", str(tmp_path / "linear.yml")]) == 2
    assert "name it" in capsys.readouterr().err and not (tmp_path / "linear.yml").exists()
    assert main(["inspect", str(out), "--references", str(option)]) == 2  # exists: --overwrite replaces it
    assert main(["inspect", str(out), "--references", str(option), "--overwrite"]) == 0
