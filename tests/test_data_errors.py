"""Bad input: one clear error line naming file and frame, exit status 2, and no output left behind."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.trajectory import Trajectory

from leignn_plugin.data import atoms_to_data
from leignn_plugin.data.cli import main
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.validation import validate_frame


def labelled(atoms: Atoms, energy: float = -1.0, forces: np.ndarray | None = None) -> Atoms:
    atoms = atoms.copy()
    forces = np.zeros((len(atoms), 3)) if forces is None else forces
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def write_traj(path: Path, images: list[Atoms]) -> Path:
    with Trajectory(path, "w") as trajectory:
        for atoms in images:
            trajectory.write(atoms)
    return path


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> str:
    """Run the CLI, expect exit status 2 with a single error line, and no output directory."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("leignn-data: error: ")
    assert "Traceback" not in captured.err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return lines[0]


def test_missing_energy_names_file_and_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    water = molecule("H2O")
    frames = []
    for index in range(3):
        frame = water.copy()
        frame.arrays["REF_forces"] = np.full((3, 3), 0.1)
        if index != 1:
            frame.info["REF_energy"] = -14.0
        frames.append(frame)
    ase.io.write(tmp_path / "water.extxyz", frames, format="extxyz")
    out = tmp_path / "ds"
    message = run_failing(["from-ase", str(tmp_path / "water.extxyz"), "--out", str(out), "--quiet"], capsys, out)
    assert "water.extxyz: frame 1: no energy found" in message


def test_missing_forces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    water = molecule("H2O")
    water.info["REF_energy"] = -14.0
    ase.io.write(tmp_path / "water.extxyz", [water], format="extxyz")
    out = tmp_path / "ds"
    message = run_failing(["from-ase", str(tmp_path / "water.extxyz"), "--out", str(out), "--quiet"], capsys, out)
    assert "water.extxyz: frame 0: no forces found" in message


def test_nan_energy_after_good_frames_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [labelled(molecule("CH4"), energy=float(-i)) for i in range(5)]
    images[3] = labelled(molecule("CH4"), energy=float("nan"))
    path = write_traj(tmp_path / "run.traj", images)
    out = tmp_path / "ds"
    argv = ["from-ase", str(path), "--out", str(out), "--shard-size", "1", "--quiet"]
    message = run_failing(argv, capsys, out)
    assert "run.traj: frame 3: energy is nan" in message


def test_infinite_force_names_atom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forces = np.zeros((5, 3))
    forces[2, 1] = np.inf
    path = write_traj(tmp_path / "run.traj", [labelled(molecule("CH4")), labelled(molecule("CH4"), forces=forces)])
    out = tmp_path / "ds"
    message = run_failing(["from-ase", str(path), "--out", str(out), "--quiet"], capsys, out)
    assert "run.traj: frame 1: forces contain NaN or inf (atom 2)" in message


def test_overlap_across_periodic_boundary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    atoms = bulk("Cu", cubic=True)
    atoms.positions[1] = atoms.positions[0] + atoms.cell[0] - [0.05, 0.0, 0.0]
    path = write_traj(tmp_path / "cu.traj", [labelled(atoms)])
    out = tmp_path / "ds"
    message = run_failing(["from-ase", str(path), "--out", str(out), "--quiet"], capsys, out)
    assert "cu.traj: frame 0: atoms 0 and 1 overlap (0.050 Å apart" in message


def test_unreadable_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "broken.extxyz"
    garbage.write_bytes(b"\x00\x01not a structure\nat all\n")
    out = tmp_path / "ds"
    message = run_failing(["from-ase", str(garbage), "--out", str(out), "--quiet"], capsys, out)
    assert "broken.extxyz: cannot be read by ase.io.read" in message
    message = run_failing(["from-ase", str(tmp_path / "nope.traj"), "--out", str(out), "--quiet"], capsys, out)
    assert "nope.traj: no such file" in message


def test_existing_output_refused_and_overwrite_is_atomic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_traj(tmp_path / "good.traj", [labelled(molecule("CH4"), energy=-3.0)])
    bad = write_traj(tmp_path / "bad.traj", [labelled(molecule("CH4"), energy=float("inf"))])
    out = tmp_path / "ds"
    assert main(["from-ase", str(good), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    assert main(["from-ase", str(good), "--out", str(out), "--quiet"]) == 2
    assert "already exists (use --overwrite to replace it)" in capsys.readouterr().err
    assert main(["from-ase", str(bad), "--out", str(out), "--overwrite", "--quiet"]) == 2
    assert "bad.traj: frame 0: energy is inf" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert main(["from-ase", str(good), str(good), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert np.load(out / "metadata.npz")["natoms"].tolist() == [5, 5]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_interrupt_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_traj(tmp_path / "run.traj", [labelled(molecule("CH4")) for _ in range(4)])
    original = atoms_to_data.FrameConverter.convert
    calls = []

    def interrupt_on_third(self, frame):
        calls.append(frame.fid)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, frame)

    monkeypatch.setattr(atoms_to_data.FrameConverter, "convert", interrupt_on_third)
    out = tmp_path / "ds"
    assert main(["from-ase", str(path), "--out", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_and_incomplete_npz_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "odd.npz", xyz=np.zeros((2, 3, 3)), energy=np.zeros(2))
    out = tmp_path / "ds"
    message = run_failing(["from-md17", str(tmp_path / "odd.npz"), "--out", str(out), "--quiet"], capsys, out)
    assert "odd.npz: unknown NPZ keys" in message and "keys found: energy, xyz" in message

    np.savez(tmp_path / "part.npz", R=np.zeros((2, 3, 3)), z=np.array([8, 1, 1]), E=np.zeros(2))
    message = run_failing(["from-md17", str(tmp_path / "part.npz"), "--out", str(out), "--quiet"], capsys, out)
    assert "part.npz: sGDML layout without forces ('F')" in message


def test_md17_force_shape_and_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    positions = molecule("H2O").positions[None].repeat(4, axis=0)
    np.savez(tmp_path / "shape.npz", R=positions, z=np.array([8, 1, 1]), E=np.zeros(4), F=np.zeros((4, 2, 3)))
    out = tmp_path / "ds"
    message = run_failing(["from-md17", str(tmp_path / "shape.npz"), "--out", str(out), "--quiet"], capsys, out)
    assert "shape.npz: 'F' has shape (4, 2, 3), which does not match the atoms" in message

    forces = np.zeros((4, 3, 3))
    forces[2, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", R=positions, z=np.array([8, 1, 1]), E=np.zeros(4), F=forces)
    argv = ["from-md17", str(tmp_path / "nan.npz"), "--out", str(out), "--train", "2", "--val", "1",
            "--test", "1", "--quiet"]
    message = run_failing(argv, capsys, out)
    assert "nan.npz: frame 2: forces contain NaN or inf (atom 0)" in message

    message = run_failing([*argv[:-7], "--train", "5", "--quiet"], capsys, out)
    assert "splits ask for" in message


def test_frame_level_checks() -> None:
    water = molecule("H2O")
    frame = Frame(water, -1.0, np.zeros((2, 3)), None, 0, 0, "w.xyz: frame 7")
    with pytest.raises(DataError, match=r"^w\.xyz: frame 7: forces have shape \(2, 3\), expected \(3, 3\)$"):
        validate_frame(frame)
    flat = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(DataError, match="periodic along axis 2 but the cell is degenerate"):
        validate_frame(Frame(flat, 0.0, np.zeros((2, 3)), None, 0, 0, "f: frame 0"))
    close = Atoms("H2", positions=[[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(DataError, match="atoms 0 and 1 overlap"):
        validate_frame(Frame(close, 0.0, np.zeros((2, 3)), None, 0, 0, "m: frame 0"))
