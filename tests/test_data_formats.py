"""Round trips of every input format into LMDBs, read back through fairchem's own LmdbDataset."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.geometry import wrap_positions
from ase.io.trajectory import Trajectory
from ase.stress import voigt_6_to_full_3x3_stress
from fairchem.core.datasets import LmdbDataset

from leignn_plugin.data.cli import main
from leignn_plugin.data.md17_source import ENERGY_UNITS

KCAL_PER_MOL_IN_EV = 0.0433641


def read_back(directory: Path) -> list:
    """Every sample of a dataset directory, via fairchem's LmdbDataset."""
    dataset = LmdbDataset({"src": str(directory)})
    return [dataset[index] for index in range(len(dataset))]


def labelled_images(n_frames: int = 3, seed: int = 0) -> list[Atoms]:
    """Rattled periodic Cu+O slabs with EMT labels, tags and FixAtoms on the bottom layer."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_frames):
        slab = fcc111("Cu", size=(2, 2, 2), vacuum=5.0, periodic=True)
        slab.info.clear()
        slab.set_tags(np.where(slab.get_tags() == 2, 0, 1))
        slab += Atoms("O", positions=[slab.positions[-1] + [0.0, 0.0, 1.8]], tags=[2])
        slab.set_constraint(FixAtoms(mask=slab.get_tags() == 0))
        slab.positions += rng.normal(0.0, 0.05, size=slab.positions.shape)
        slab.positions[0] -= [0.3, 0.0, 0.0]
        slab.calc = EMT()
        energy, forces, stress = slab.get_potential_energy(), slab.get_forces(), slab.get_stress()
        slab.calc = SinglePointCalculator(slab, energy=energy, forces=forces, stress=stress)
        images.append(slab)
    return images


def assert_matches(sample, atoms: Atoms, energy: float, forces: np.ndarray, *, sid: int, fid: int,
                   energy_key: str = "energy", forces_key: str = "forces") -> None:
    """Every field of one sample against the structure and labels it was made from."""
    n = len(atoms)
    assert sample.natoms == n
    expected_positions = wrap_positions(atoms.positions, atoms.cell.complete(), pbc=atoms.pbc, eps=0)
    np.testing.assert_allclose(sample.pos.numpy(), expected_positions, atol=1e-5)
    assert sample.pos.dtype == torch.float32
    np.testing.assert_allclose(sample.cell.numpy(), atoms.cell.complete()[None], atol=1e-6)
    assert sample.cell.shape == (1, 3, 3)
    np.testing.assert_array_equal(sample.atomic_numbers.long().numpy(), atoms.numbers)
    np.testing.assert_array_equal(sample.tags.numpy(), atoms.get_tags())
    expected_fixed = np.zeros(n, dtype=np.int32)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            expected_fixed[constraint.index] = 1
    np.testing.assert_array_equal(sample.fixed.numpy(), expected_fixed)
    np.testing.assert_array_equal(sample.pbc.numpy(), np.asarray(atoms.pbc)[None])
    assert sample.sid == sid and sample.fid == fid
    assert isinstance(sample[energy_key], float)
    assert sample[energy_key] == pytest.approx(energy, abs=1e-9)
    assert sample[forces_key].dtype == torch.float32
    np.testing.assert_allclose(sample[forces_key].numpy(), forces, atol=1e-5)


def test_extxyz_with_ref_keys_and_plain_calculator_keys(tmp_path: Path) -> None:
    images = labelled_images()
    for atoms in images:
        atoms.set_constraint()  # extxyz does not store constraints
    ref_images = []
    for atoms in images:
        plain = atoms.copy()
        plain.info["REF_energy"] = atoms.get_potential_energy()
        plain.arrays["REF_forces"] = atoms.get_forces()
        plain.info["REF_stress"] = atoms.get_stress()
        ref_images.append(plain)
    ase.io.write(tmp_path / "ref.extxyz", ref_images, format="extxyz")
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=-14.2, forces=np.arange(9.0).reshape(3, 3) * 0.01)
    ase.io.write(tmp_path / "mol.extxyz", [water], format="extxyz")

    assert main(["from-ase", str(tmp_path / "ref.extxyz"), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    samples = read_back(tmp_path / "ds")
    assert len(samples) == len(images)
    for fid, (sample, atoms) in enumerate(zip(samples, images)):
        assert_matches(sample, atoms, atoms.get_potential_energy(), atoms.get_forces(), sid=0, fid=fid)
        np.testing.assert_allclose(
            sample.stress.numpy(), voigt_6_to_full_3x3_stress(atoms.get_stress()), atol=1e-7
        )
    sources = json.loads((tmp_path / "ds" / "sources.json").read_text())
    assert sources["files"][0]["path"].endswith("ref.extxyz")

    assert main(["from-ase", str(tmp_path / "mol.extxyz"), "--out", str(tmp_path / "mol"), "--quiet"]) == 0
    (sample,) = read_back(tmp_path / "mol")
    assert_matches(sample, water, -14.2, np.arange(9.0).reshape(3, 3) * 0.01, sid=0, fid=0)
    assert not sample.pbc.any()
    np.testing.assert_allclose(sample.cell.numpy()[0], np.eye(3))


def test_traj_oc20_convention_sharded(tmp_path: Path) -> None:
    images = labelled_images(n_frames=5, seed=1)
    with Trajectory(tmp_path / "relax.traj", "w") as trajectory:
        for atoms in images:
            trajectory.write(atoms)
    out = tmp_path / "ds"
    argv = ["from-ase", str(tmp_path / "relax.traj"), "--out", str(out), "--convention", "oc20",
            "--shard-size", "2", "--no-stress", "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.lmdb")) == ["data.0000.lmdb", "data.0001.lmdb", "data.0002.lmdb"]
    samples = read_back(out)
    for fid, (sample, atoms) in enumerate(zip(samples, images)):
        assert_matches(sample, atoms, atoms.get_potential_energy(), atoms.get_forces(), sid=0, fid=fid,
                       energy_key="y", forces_key="force")
        assert sample.atomic_numbers.dtype == torch.float32
        assert "energy" not in sample and "forces" not in sample and "stress" not in sample
    np.testing.assert_array_equal(np.load(out / "metadata.npz")["natoms"], [len(a) for a in images])
    mapped = LmdbDataset({"src": str(out), "key_mapping": {"y": "energy", "force": "forces"}})[0]
    assert mapped.energy == pytest.approx(images[0].get_potential_energy())


def _vector_block(name: str, rows: np.ndarray) -> str:
    lines = "".join(f"   <v> {' '.join(f'{x:.8f}' for x in row)} </v>\n" for row in rows)
    return f'  <varray name="{name}">\n{lines}  </varray>\n'


def write_vasprun(path: Path, cell: np.ndarray, scaled: list[np.ndarray], forces: list[np.ndarray],
                  stresses_kbar: list[np.ndarray], energies: list[tuple[float, float]]) -> None:
    """A minimal vasprun.xml (Cu, O; atom 0 fixed by selective dynamics) that ASE can parse."""
    steps = ""
    for positions, force, stress, (e_fr, e_0) in zip(scaled, forces, stresses_kbar, energies):
        steps += (
            " <calculation>\n"
            f'  <scstep><energy><i name="e_fr_energy"> {e_fr} </i><i name="e_0_energy"> {e_0} </i></energy></scstep>\n'
            f'  <structure><crystal>\n{_vector_block("basis", cell)}  </crystal>\n'
            f'{_vector_block("positions", positions)}  </structure>\n'
            f'{_vector_block("forces", force)}{_vector_block("stress", stress)}'
            f'  <energy><i name="e_fr_energy"> {e_fr} </i><i name="e_0_energy"> {e_0} </i></energy>\n'
            " </calculation>\n"
        )
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n'
        ' <kpoints>\n  <varray name="kpointlist"><v> 0 0 0 </v></varray>\n'
        '  <varray name="weights"><v> 1 </v></varray>\n </kpoints>\n'
        " <parameters></parameters>\n"
        ' <atominfo><array name="atoms"><set>\n'
        "  <rc><c>Cu</c><c>1</c></rc>\n  <rc><c>O</c><c>2</c></rc>\n"
        " </set></array></atominfo>\n"
        ' <structure name="initialpos"><crystal>\n'
        f"{_vector_block('basis', cell)}  </crystal>\n{_vector_block('positions', scaled[0])}"
        '  <varray name="selective">\n   <v type="logical"> F F F </v>\n   <v type="logical"> T T T </v>\n'
        "  </varray>\n </structure>\n"
        f"{steps}</modeling>\n"
    )


def test_vasprun_xml(tmp_path: Path) -> None:
    cell = np.diag([3.0, 3.2, 3.4])
    scaled = [np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.45]]), np.array([[0.01, 0.0, 0.0], [0.5, 0.52, 0.5]])]
    forces = [np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]]), np.array([[0.05, 0.0, 0.01], [-0.05, 0.0, -0.01]])]
    stresses = [np.diag([1.0, 2.0, 3.0]), np.diag([-1.0, 0.5, 0.0]) + 0.1]
    energies = [(-10.5, -10.4), (-11.0, -10.95)]
    write_vasprun(tmp_path / "vasprun.xml", cell, scaled, forces, stresses, energies)
    assert main(["from-ase", str(tmp_path / "vasprun.xml"), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    samples = read_back(tmp_path / "ds")
    assert len(samples) == 2
    for fid, sample in enumerate(samples):
        atoms = Atoms("CuO", scaled_positions=scaled[fid], cell=cell, pbc=True, constraint=FixAtoms([0]))
        assert_matches(sample, atoms, energies[fid][1], forces[fid], sid=0, fid=fid)
        np.testing.assert_allclose(sample.stress.numpy(), -0.1 * units.GPa * stresses[fid], atol=1e-9)


def _md17_arrays(n_frames: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = molecule("CH3CH2OH")
    positions = base.positions[None] + rng.normal(0.0, 0.05, size=(n_frames, len(base), 3))
    return {
        "numbers": base.numbers,
        "positions": positions,
        "energies": rng.normal(-97000.0, 5.0, size=n_frames),
        "forces": rng.normal(0.0, 30.0, size=(n_frames, len(base), 3)),
    }


@pytest.mark.parametrize("layout", ["sGDML", "rMD17"])
def test_md17_layouts_units_and_splits(tmp_path: Path, layout: str) -> None:
    arrays = _md17_arrays()
    if layout == "sGDML":
        np.savez(tmp_path / "md17.npz", R=arrays["positions"], E=arrays["energies"][:, None], F=arrays["forces"],
                 z=arrays["numbers"], name=np.array("ethanol"))
    else:
        np.savez(tmp_path / "md17.npz", coords=arrays["positions"], energies=arrays["energies"],
                 forces=arrays["forces"], nuclear_charges=arrays["numbers"])
    out = tmp_path / "ds"
    argv = ["from-md17", str(tmp_path / "md17.npz"), "--out", str(out), "--train", "20", "--val", "5",
            "--test", "-1", "--seed", "3", "--quiet"]
    assert main(argv) == 0
    splits = json.loads((out / "splits.json").read_text())
    assert [len(splits[name]) for name in ("train", "val", "test")] == [20, 5, 15]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(40))
    for name in ("train", "val", "test"):
        samples = read_back(out / name)
        assert [s.fid for s in samples] == splits[name]
        for sample in samples:
            index = sample.fid
            atoms = Atoms(numbers=arrays["numbers"], positions=arrays["positions"][index], pbc=False)
            energy = arrays["energies"][index] * KCAL_PER_MOL_IN_EV
            assert sample.energy == pytest.approx(energy, rel=1e-6)
            assert_matches(sample, atoms, arrays["energies"][index] * ENERGY_UNITS["kcal/mol"],
                           arrays["forces"][index] * KCAL_PER_MOL_IN_EV, sid=0, fid=index)

    again = tmp_path / "again"
    assert main([*argv[:3], str(again), *argv[4:]]) == 0
    assert json.loads((again / "splits.json").read_text())["train"] == splits["train"]


def test_md17_index_files_and_ev_unit(tmp_path: Path) -> None:
    arrays = _md17_arrays(n_frames=30)
    np.savez(tmp_path / "rmd17.npz", coords=arrays["positions"], energies=arrays["energies"],
             forces=arrays["forces"], nuclear_charges=arrays["numbers"])
    (tmp_path / "index_train_01.csv").write_text("\n".join(str(i) for i in [29, 3, 7, 11, 0, 15, 21, 4]) + "\n")
    (tmp_path / "index_test_01.csv").write_text("\n".join(str(i) for i in [1, 2, 5]) + "\n")
    out = tmp_path / "ds"
    argv = ["from-md17", str(tmp_path / "rmd17.npz"), "--out", str(out), "--val", "2", "--unit", "eV",
            "--index-train", str(tmp_path / "index_train_01.csv"),
            "--index-test", str(tmp_path / "index_test_01.csv"), "--quiet"]
    assert main(argv) == 0
    train = [s.fid for s in read_back(out / "train")]
    val = [s.fid for s in read_back(out / "val")]
    assert [s.fid for s in read_back(out / "test")] == [1, 2, 5]
    assert len(val) == 2 and len(train) == 6
    assert sorted(train + val) == sorted([29, 3, 7, 11, 0, 15, 21, 4])
    first = read_back(out / "test")[0]
    assert first.energy == pytest.approx(arrays["energies"][1], rel=1e-12)
    np.testing.assert_allclose(first.forces.numpy(), arrays["forces"][1], rtol=1e-6, atol=1e-5)


def test_python_dash_m_entry_point(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["leignn-data", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("leignn_plugin.data", run_name="__main__")
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for command in ("from-ase", "from-md17", "demo", "inspect"):
        assert command in help_text


def test_bulk_periodic_positions_are_wrapped(tmp_path: Path) -> None:
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.positions[0] -= [0.5, 0.0, 0.0]
    atoms.calc = SinglePointCalculator(atoms, energy=1.5, forces=np.zeros((len(atoms), 3)))
    ase.io.write(tmp_path / "cu.extxyz", atoms, format="extxyz")
    assert main(["from-ase", str(tmp_path / "cu.extxyz"), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    (sample,) = read_back(tmp_path / "ds")
    assert_matches(sample, atoms, 1.5, np.zeros((len(atoms), 3)), sid=0, fid=0)
    assert float(sample.pos[0, 0]) > 0.0
