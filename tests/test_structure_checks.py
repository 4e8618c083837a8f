"""Physical sanity where structures enter, and how commands end (issue 16).

Structures no potential should be asked about (atoms on top of each other or of a periodic image,
a NaN position, element X) get one line naming the structure and the atoms: from the calculator, from
``leignn-data from-ase``, ``leignn-md run`` and ``main.py --mode predict``; normal structures pass the
same checks. Also: ``leignn-md run`` refuses a folder holding a run, ``leignn-data inspect`` ends
quietly into a closed pipe, a run-relaxations with every trajectory present says so in one line, and a
broken install names a fix that exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import error_line

from leignn_plugin.data.atoms_to_data import FrameConverter
from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.lmdb_writer import write_lmdb_shards
from leignn_plugin.errors import StructureError
from leignn_plugin.graph import DEFAULT_MIN_DISTANCE, CloseAtoms, check_structures, neighbor_graph
from leignn_plugin.install_hint import install_hint
from leignn_plugin.md.calculator import LEIGNNCalculator

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = {"name": "leignn", "hidden_channels": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0,
         "max_neighbors": 30, "num_elements": 30}


def copper(repeat: int = 1) -> Atoms:
    """A cubic fcc Cu cell (4 atoms per repeat^3)."""
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)


def write_dataset(folder: Path, structures: list[Atoms], shard_size: int = 1000) -> Path:
    """An S2EF LMDB of ``structures`` (zero labels) written without the data tools' checks, as a
    dataset from elsewhere could be."""
    converter = FrameConverter(Convention.FAIRCHEM)
    frames = (Frame(atoms, -1.0, np.zeros((len(atoms), 3)), None, sid, 0, f"frame {sid}")
              for sid, atoms in enumerate(structures))
    write_lmdb_shards((converter.convert(frame) for frame in frames), folder, shard_size=shard_size, progress=False)
    return folder


def write_config(path: Path, datasets: dict, task: dict | None = None) -> Path:
    """A main.py config for the tiny model of :func:`checkpoint`."""
    config = {
        "trainer": "ocp", "logger": "tensorboard", "dataset": datasets,
        "outputs": {"energy": {"shape": 1, "level": "system"}, "forces": {"irrep_dim": 1, "level": "atom"}},
        "loss_functions": [{"energy": {"fn": "mae", "coefficient": 1}}, {"forces": {"fn": "mae", "coefficient": 1}}],
        "evaluation_metrics": {"metrics": {"energy": ["mae"]}, "primary_metric": "energy_mae"},
        "model": MODEL,
        "optim": {"batch_size": 1, "eval_batch_size": 1, "num_workers": 0, "lr_initial": 1e-3, "max_epochs": 1,
                  "scheduler": "Null"},
        "task": task or {},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def write_checkpoint(path: Path) -> Path:
    """A fairchem checkpoint of an untrained tiny LEIGNN (what the checks need is a model, not a good one)."""
    from leignn_plugin.fairchem1 import LEIGNN

    torch.manual_seed(0)
    model = LEIGNN(**{k: v for k, v in MODEL.items() if k != "name"})
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"config": {"model": MODEL}, "state_dict": state, "normalizers": {}, "elementrefs": {},
                "epoch": 0, "step": 0, "ema": None}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")


def run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def labelled(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    return atoms


# --- the calculator (Python API) ---------------------------------------------------------------------


def test_calculator_refuses_overlapping_atoms(checkpoint):
    atoms = copper(2)
    atoms.positions[5] = atoms.positions[3]
    atoms.calc = LEIGNNCalculator(checkpoint)
    with pytest.raises(StructureError, match=r"Cu32 \(32 atoms\): atoms 3 and 5 overlap \(0\.000 Å apart; "
                                             r"minimum is 0\.3 Å, set by min_distance\)"):
        atoms.get_potential_energy()


def test_calculator_refuses_a_nan_position(checkpoint):
    atoms = molecule("CH4")
    atoms.positions[2, 1] = np.nan
    atoms.calc = LEIGNNCalculator(checkpoint)
    with pytest.raises(StructureError, match=r"^CH4 \(5 atoms\): positions contain NaN or inf \(atom 2\)$"):
        atoms.get_potential_energy()


def test_calculator_refuses_an_atom_on_a_periodic_image(checkpoint):
    """Atom 1 sits 0.05 Å from atom 0's image one cell over: close only through the boundary."""
    atoms = copper()
    atoms.positions[1] = atoms.positions[0] + atoms.cell[0] - [0.05, 0.0, 0.0]
    assert np.linalg.norm(atoms.positions[1] - atoms.positions[0]) > 3.0
    atoms.calc = LEIGNNCalculator(checkpoint)
    with pytest.raises(StructureError, match=r"atoms 0 and 1 overlap \(0\.050 Å apart across the periodic "
                                             r"boundary"):
        atoms.get_potential_energy()


def test_calculator_checks_every_md_step_not_only_list_builds(checkpoint):
    """Between Verlet-list rebuilds the close-atom check still sees every pair (the candidates hold it)."""
    atoms = copper(2)
    calc = LEIGNNCalculator(checkpoint, skin=6.0)  # rebuilt only after an atom moved 3 Å
    atoms.calc = calc
    atoms.get_potential_energy()
    distances = np.linalg.norm(atoms.positions - atoms.positions[0], axis=1)
    neighbour = int(np.argsort(distances)[1])  # 2.55 Å away
    direction = (atoms.positions[neighbour] - atoms.positions[0]) / distances[neighbour]
    atoms.positions[neighbour] = atoms.positions[0] + 0.1 * direction
    with pytest.raises(StructureError, match=f"atoms 0 and {neighbour} overlap \\(0\\.100 Å apart"):
        atoms.get_potential_energy()
    assert calc.neighbors.num_builds == 1


@pytest.mark.parametrize("method", ["vesin", "fairchem"])
def test_model_refuses_a_batch_with_overlapping_images(method):
    """The fairchem adapter checks each batch from the pairs its search found (both searches), naming
    the structure by sid and fid."""
    from fairchem.core.datasets import data_list_collater

    from leignn_plugin.fairchem1 import LEIGNN

    good, bad = copper(), copper()
    bad.positions[1] = bad.positions[0] + bad.cell[0] - [0.05, 0.0, 0.0]
    converter = FrameConverter(Convention.FAIRCHEM, with_labels=False)
    data = [converter.convert(Frame(a, None, None, None, 7 + k, 3, "")) for k, a in enumerate((good, bad))]
    batch = data_list_collater(data, otf_graph=True)
    model = LEIGNN(**{k: v for k, v in MODEL.items() if k != "name"}, graph_method=method).eval()
    with pytest.raises(StructureError, match=r"^structure 1 of the batch \(sid 8, fid 3\): atoms 0 and 1 overlap "
                                             r"\(0\.050 Å apart across the periodic boundary; minimum is 0\.3 Å, "
                                             r"set by the model option min_distance\)$"):
        model(batch)
    assert torch.isfinite(model(data_list_collater(data[:1], otf_graph=True))["energy"]).all()


def test_atom_on_its_own_image_in_a_too_small_cell():
    cell = np.eye(3) * 0.25
    with pytest.raises(StructureError, match="atom 0 overlaps its own periodic image"):
        check_structures(torch.zeros(1, 3), torch.tensor(cell), torch.ones(1, 3, dtype=torch.bool), [1],
                         torch.tensor([1]))


# --- normal structures pass --------------------------------------------------------------------------


def normal_structures() -> dict[str, Atoms]:
    """Real structures at and near their shortest distances (H2's bond, 0.74 Å, is the shortest there is)."""
    primitive = bulk("Cu", "fcc", a=3.61)  # 2.55 Å neighbours, its own images at the same distance
    triclinic = bulk("Si", "diamond", a=5.43) * (1, 1, 2)
    shear = np.array([[0.0, 0.0, 0.0], [0.8, 0.0, 0.0], [0.3, 0.5, 0.0]])
    triclinic.set_cell(triclinic.cell.array + shear, scale_atoms=True)
    slab = fcc111("Pt", (2, 2, 3), vacuum=8.0)
    slab.pbc = (True, True, False)
    return {"H2": molecule("H2"), "CH4": molecule("CH4"), "C6H6": molecule("C6H6"), "Cu primitive": primitive,
            "Cu 32": copper(2), "Si triclinic": triclinic, "Pt(111) slab": slab,
            "rattled Cu": _rattled(copper(2))}


def _rattled(atoms: Atoms) -> Atoms:
    atoms.rattle(0.2, seed=1)
    return atoms


@pytest.mark.parametrize("name", sorted(normal_structures()))
def test_normal_structures_pass(name, checkpoint):
    atoms = normal_structures()[name]
    check_structures(atoms.positions, atoms.cell.array, atoms.pbc.reshape(1, 3), [len(atoms)], atoms.numbers)
    if set(atoms.numbers) <= set(range(1, 31)):
        atoms.calc = LEIGNNCalculator(checkpoint)
        assert np.isfinite(atoms.get_potential_energy())


def test_the_demo_data_passes(demo_data):
    """Every frame of the embedded demo datasets (EMT slabs with adsorbates, GFN2 molecules) passes."""
    from fairchem.core.datasets import LmdbDataset

    folders = sorted({p.parent for p in demo_data.rglob("*.lmdb")})
    assert folders
    for folder in folders:
        dataset = LmdbDataset({"src": str(folder)})
        for k in range(len(dataset)):
            data = dataset[k]
            pbc = getattr(data, "pbc", torch.ones(1, 3, dtype=torch.bool))
            check_structures(data.pos, data.cell, pbc, data.natoms, data.atomic_numbers.long(),
                             name=lambda _, f=folder, i=k: f"{f} {i}")


def test_the_threshold_is_a_setting(checkpoint, tmp_path):
    """The calculator, the data tools and the model take their own threshold (0 switches the check off)."""
    from leignn_plugin.data.cli import main as data_main
    from leignn_plugin.fairchem1 import LEIGNN

    assert DEFAULT_MIN_DISTANCE == 0.3
    atoms = copper(2)
    atoms.positions[5] = atoms.positions[3] + [0.2, 0.0, 0.0]
    atoms.calc = LEIGNNCalculator(checkpoint, min_distance=0.1)
    assert np.isfinite(atoms.get_potential_energy())
    close = tmp_path / "close.traj"
    write(close, labelled(atoms))
    assert data_main(["from-ase", str(close), "--out", str(tmp_path / "ds"), "--quiet", "--min-distance", "0.1"]) == 0
    assert LEIGNN(**{k: v for k, v in MODEL.items() if k != "name"}, min_distance=0).min_distance == 0.0


# --- commands: one line each -------------------------------------------------------------------------


def test_from_ase_refuses_element_x(tmp_path, bad_input):
    """Z=0 in a structure file: one line naming file, frame and atom; no dataset, an earlier one intact."""
    good = tmp_path / "good.extxyz"
    write(good, [labelled(molecule("CH4"))])
    bad = tmp_path / "bad.extxyz"
    dummy = molecule("H2O")
    dummy.numbers[0] = 0
    write(bad, [labelled(molecule("CH4")), labelled(dummy)])
    out = tmp_path / "ds"
    data = str(BIN / "leignn-data")
    proc = run([data, "from-ase", str(bad), "--out", str(out), "--quiet"])
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert f"{bad}: frame 1: atom 0 has atomic number 0 (X, a dummy atom)" in line
    assert not out.exists()
    bad_input("element X (Z=0) in a structure file", "leignn-data from-ase FILE --out DIR", line)

    assert run([data, "from-ase", str(good), "--out", str(out), "--quiet"]).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run([data, "from-ase", str(bad), "--out", str(out), "--overwrite", "--quiet"])
    assert error_line(proc.returncode, proc.stderr, "leignn-data") == line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_md_run_refuses_close_atoms(checkpoint, tmp_path, capsys, bad_input):
    from leignn_plugin.md.cli import main as md_main

    atoms = copper(2)
    atoms.positions[7] = atoms.positions[2] + [0.0, 0.1, 0.0]
    structure = tmp_path / "close.extxyz"
    write(structure, atoms)
    out = tmp_path / "run"
    code = md_main(["run", "--checkpoint", str(checkpoint), "--structure", str(structure), "--steps", "2",
                    "--ensemble", "nve", "--out", str(out), "--no-progress"])
    line = error_line(code, capsys.readouterr().err, "leignn-md")
    assert line == (f"leignn-md: error: {structure} (frame -1): atoms 2 and 7 overlap (0.100 Å apart; "
                    "minimum is 0.3 Å, set by --min-distance)")
    assert not out.exists()
    bad_input("atoms closer than --min-distance in an MD start structure",
                     "leignn-md run --checkpoint CKPT --structure FILE --steps N --out RUN", line)


@pytest.mark.parametrize("kind", ["overlapping atoms", "element X (Z=0)"])
def test_predict_refuses_a_bad_frame(kind, checkpoint, tmp_path, bad_input):
    """A dataset from elsewhere with one bad frame: main.py --mode predict stops with one line naming it."""
    frames = [copper(), copper(), copper()]
    if kind == "overlapping atoms":
        frames[1].positions[1] = frames[1].positions[0]
    else:
        frames[1].numbers[2] = 0
    data = write_dataset(tmp_path / "data", frames)
    config = write_config(tmp_path / "predict.yml", {"test": {"src": str(data)}})
    proc = run([sys.executable, "main.py", "--mode", "predict", "--config-yml", str(config), "--cpu",
                "--checkpoint", str(checkpoint), "--run-dir", str(tmp_path / "runs")])
    line = error_line(proc.returncode, proc.stderr, "leignn")
    expected = ("atoms 0 and 1 overlap (0.000 Å apart; minimum is 0.3 Å, set by the model option min_distance)"
                if kind == "overlapping atoms" else
                "atom 2 has atomic number 0 (X, a dummy atom); only 1..30 are allowed (the model's num_elements)")
    assert line == f"leignn: error: structure 0 of the batch (sid 1, fid 0): {expected}"  # batches of one
    bad_input(f"{kind} in a dataset frame", "python main.py --mode predict --config-yml CFG --checkpoint CKPT",
                     line)


def test_a_launched_rank_reports_a_bad_frame_in_one_line(checkpoint, tmp_path):
    """Two local ranks (torch's elastic launcher, separate processes): the rank that meets the bad frame
    hands its message to the launcher, which prints it once; no traceback from either process."""
    frames = [copper(), copper(), copper(), copper()]
    frames[1].positions[1] = frames[1].positions[0]
    data = write_dataset(tmp_path / "data", frames)
    config = write_config(tmp_path / "predict.yml", {"test": {"src": str(data)}})
    proc = run([sys.executable, "main.py", "--mode", "predict", "--config-yml", str(config), "--cpu",
                "--num-gpus", "2", "--checkpoint", str(checkpoint), "--run-dir", str(tmp_path / "runs")])
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line.startswith("leignn: error: structure 0 of the batch (sid 1, fid 0): atoms 0 and 1 overlap")


def test_md_run_refuses_an_existing_run_unless_overwrite(checkpoint, tmp_path, capsys, bad_input):
    from leignn_plugin.md.cli import main as md_main

    structure = tmp_path / "cu.extxyz"
    write(structure, copper(2))
    out = tmp_path / "run"
    argv = ["run", "--checkpoint", str(checkpoint), "--structure", str(structure), "--ensemble", "nve",
            "--interval", "1", "--out", str(out), "--no-progress"]
    assert md_main([*argv, "--steps", "2"]) == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    line = error_line(md_main([*argv, "--steps", "3"]), capsys.readouterr().err, "leignn-md")
    assert line == (f"leignn-md: error: --out {out} already holds an MD run (run.json, md.traj, md_log.csv); "
                    "pass --overwrite to replace it, or choose another folder")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    bad_input("an --out that already holds an MD run", "leignn-md run ... --out RUN (again)", line)

    assert md_main([*argv, "--steps", "3", "--overwrite"]) == 0
    assert len((out / "md_log.csv").read_text().splitlines()) == 5  # header and steps 0..3
    assert (out / "notes.txt").read_text() == "mine"


def test_md_run_stops_when_atoms_collide(checkpoint, tmp_path, capsys):
    """Atoms driven together during a run stop it (exit 3) like the temperature guard, the files complete."""
    from leignn_plugin.md.cli import main as md_main

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.8, 0, 0]], momenta=[[40.0, 0, 0], [-40.0, 0, 0]])
    structure = tmp_path / "pair.traj"
    write(structure, atoms)
    out = tmp_path / "run"
    code = md_main(["run", "--checkpoint", str(checkpoint), "--structure", str(structure), "--ensemble", "nve",
                    "--keep-velocities", "--steps", "20", "--interval", "1", "--t-max", "1e9", "--out", str(out),
                    "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "leignn-md: stopped: Cu2 (2 atoms): atoms 0 and 1 overlap" in err and "at step" in err
    assert (out / "run.json").is_file() and '"status": "stopped"' in (out / "run.json").read_text()


def test_inspect_into_a_closed_pipe(tmp_path):
    """`leignn-data inspect DIR | head -1`: the first line, no traceback; a reader gone before the first
    write ends the command quietly with 141 (128 + SIGPIPE)."""
    from leignn_plugin.data.pipelines import convert_ase_files

    source = tmp_path / "frames.extxyz"
    write(source, [labelled(molecule(name)) for name in ("CH4", "H2O", "NH3")])
    for split in ("train", "val"):
        convert_ase_files([source], tmp_path / "ds" / split, progress=False)
    data = BIN / "leignn-data"
    head = subprocess.run(["bash", "-c", f"'{data}' inspect '{tmp_path / 'ds'}' | head -1"],
                          capture_output=True, text=True, timeout=300)
    assert head.returncode == 0 and len(head.stdout.splitlines()) == 1, head.stderr
    assert "Traceback" not in head.stderr and "Exception ignored" not in head.stderr, head.stderr
    closed = subprocess.run(["bash", "-c", f"'{data}' inspect '{tmp_path / 'ds'}' | true; exit ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, timeout=300)
    assert closed.returncode == 141, closed.stderr
    assert "Traceback" not in closed.stderr and "BrokenPipe" not in closed.stderr, closed.stderr


def test_run_relaxations_with_every_trajectory_present(checkpoint, tmp_path, bad_input):
    """fairchem skips systems whose <sid>.traj exists; when that is all of them, one line says so."""
    data = write_dataset(tmp_path / "relax", [copper(), copper(), copper()])
    traj_dir = tmp_path / "trajectories"
    traj_dir.mkdir()
    for sid in range(3):
        (traj_dir / f"{sid}.traj").touch()
    config = write_config(tmp_path / "relax.yml", {"relax": {"src": str(data)}},
                          {"relax_opt": {"traj_dir": str(traj_dir)}, "write_pos": True})
    proc = run([sys.executable, "main.py", "--mode", "run-relaxations", "--config-yml", str(config), "--cpu",
                "--checkpoint", str(checkpoint), "--run-dir", str(tmp_path / "runs")])
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line == (f"leignn: error: run-relaxations: all 3 systems already have trajectories in {traj_dir}; "
                    f"nothing to relax (use a fresh --task.relax_opt.traj_dir=DIR, or remove {traj_dir})")
    bad_input("run-relaxations with every trajectory already in traj_dir",
                     "python main.py --mode run-relaxations --config-yml CFG --checkpoint CKPT", line)


# --- first steps -------------------------------------------------------------------------------------


def test_install_hints_name_a_fix_that_exists(tmp_path):
    assert install_hint(tmp_path) == "run `make install`, then `source .venv/bin/activate`"
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").touch()
    assert "run `source .venv/bin/activate` first" in install_hint(tmp_path)
    assert "`rm .venv/.leignn-installed && make install`" in install_hint(Path(sys.prefix).parent)
    makefile = (REPO / "Makefile").read_text()
    assert "STAMP := $(VENV)/.leignn-installed" in makefile and "\ninstall: $(STAMP)" in makefile


def test_main_py_outside_the_venv_says_to_activate_it():
    """A Python without the project's packages (the system one, say) gets the activation to run."""
    system = shutil.which("python3", path=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                          if not p.startswith(str(BIN))))
    if system is None or subprocess.run([system, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("needs a python3 without torch on PATH")
    proc = run([system, "main.py", "--mode", "train"])
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert "broken install: cannot import" in line and "run `source .venv/bin/activate` first" in line


# --- atoms far outside any sensible box, degenerate cells (issue 21) --------------------------------


def in_child(code: str, memory_gib: int = 6) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python limited to ``memory_gib``: without the checks the search dies by a signal
    (or asks for all memory), which must not take the test session with it."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_gib << 30}, {memory_gib << 30}))\n"
    return subprocess.run([sys.executable, "-c", limit + textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


FAR_OUT = {
    # name: (structure built in the child, the refusal); each killed the process or went wrong before
    "an atom 1e8 Å away (molecule)": (
        "atoms = molecule('CH4'); atoms.positions[2] = [1e8, 0, 0]",
        "structure 0: atoms 2 and 4 are 1e+08 Å apart along x, which is not periodic; a structure spans at "
        "most 10000 Å (1 µm) where it is not periodic (did an atom leave it?)"),  # was SIGFPE in vesin
    "an atom 5e4 Å above a slab": (
        "atoms = fcc111('Pt', (2, 2, 3), vacuum=8.0); atoms.pbc = (True, True, False); atoms.positions[11, 2] = 5e4",
        "structure 0: atoms 0 and 11 are 5e+04 Å apart along z, which is not periodic"),  # was a 60 s search
    "a coordinate of 1e12 Å along a periodic axis": (
        "atoms = bulk('Cu', cubic=True); atoms.positions[1, 0] = 1e12",
        "structure 0: atom 1 is at 1e+12 Å along x; coordinates beyond 1e+08 Å (1 cm) are corrupt"),  # pairs lost
    "a singular periodic cell": (
        "atoms = bulk('Cu', cubic=True); atoms.cell[2] = 0.0",
        "structure 0: periodic along axis 2 but the cell is degenerate in that direction (0 Å between its "
        "faces; a periodic cell needs at least 0.2 Å)"),  # was vesin's RuntimeError
    "a 0.01 Å periodic cell": (
        "atoms = bulk('Cu', cubic=True); atoms.set_cell(np.eye(3) * 0.01)",
        "structure 0: periodic along axis 0 but the cell is degenerate"),  # was SIGSEGV, out of memory
    "a cell and positions in nm read as Å": (
        "atoms = bulk('Cu', cubic=True) * (10, 10, 10); atoms.set_cell(atoms.cell / 10, scale_atoms=True)",
        "structure 0: 4000 atoms in 47 Å^3 (its periodic cell) cannot all be 0.3 Å apart, so some overlap "
        "(minimum is 0.3 Å, set by min_distance)"),  # was 3e8 pairs: out of memory
}


@pytest.mark.parametrize("case", sorted(FAR_OUT))
def test_the_search_is_given_only_sensible_structures(case):
    """The one neighbour search refuses these in one line before vesin sees them (every entry point
    goes through it: the model's batches, the calculator, the data tools)."""
    build, refusal = FAR_OUT[case]
    child = in_child(f"""
        import numpy as np, torch
        from ase.build import bulk, fcc111, molecule
        from leignn_plugin.errors import StructureError
        from leignn_plugin.graph import CloseAtoms, neighbor_graph
        {build}
        try:
            neighbor_graph(torch.tensor(atoms.positions), torch.tensor(atoms.cell.array).view(1, 3, 3),
                           torch.tensor(atoms.pbc).view(1, 3), torch.tensor([len(atoms)]), 6.0, 20,
                           close_atoms=CloseAtoms(0.3))
            print("searched")
        except StructureError as err:
            print(err)
        """)
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert child.stdout.strip().startswith(refusal), child.stdout


def test_real_large_systems_pass():
    """What a user really runs passes: a 108,000-atom slab, molecules in 1000 Å vacuum boxes (periodic or
    not), 2000 H2 molecules in a row 9,995 Å long along a non-periodic axis."""
    slab = fcc111("Cu", (60, 60, 30), vacuum=10.0)
    slab.pbc = (True, True, False)
    boxed = molecule("C6H6")
    boxed.center(vacuum=500.0)
    chain = Atoms("H2" * 2000, positions=[[0, 0, 5.0 * (k // 2) + 0.74 * (k % 2)] for k in range(4000)])
    for atoms, pbc in ((slab, slab.pbc), (boxed, (False,) * 3), (boxed, (True,) * 3), (chain, (False,) * 3)):
        check_structures(atoms.positions, atoms.cell.array, np.reshape(pbc, (1, 3)), [len(atoms)], atoms.numbers)
    graph = neighbor_graph(torch.tensor(slab.positions), torch.tensor(slab.cell.array).view(1, 3, 3),
                           torch.tensor(slab.pbc).view(1, 3), torch.tensor([len(slab)]), 6.0, 20,
                           close_atoms=CloseAtoms(0.3))
    assert graph.num_edges >= 20 * len(slab) * 0.9


def test_a_flat_sheet_2000_angstrom_wide_is_searched():
    """vesin shrinks a grid of over 100,000 cells keeping its shape, and a flat one (333 x 333 x 1 cells)
    loses an axis: SIGFPE. The search widens its radius there and drops the extra pairs again: the pairs
    are ASE's."""
    child = in_child("""
        import numpy as np, torch
        from ase.neighborlist import primitive_neighbor_list
        from leignn_plugin.graph.vesin_search import structure_pairs
        cell, pbc = np.diag([2000.0, 2000.0, 0.0]), [True, True, False]
        pos = np.array([[0.0, 0, 0], [1.4, 0, 0], [1999.0, 0.5, 0], [700.0, 700.0, 0.0], [704.0, 700.0, 1.0]])
        i, j, shifts, d2 = structure_pairs(torch.tensor(pos), torch.tensor(cell), pbc, 6.0)
        ours = sorted(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))
        ai, aj, aS = primitive_neighbor_list("ijS", pbc, cell, pos, 6.0)
        assert ours == sorted(zip(ai.tolist(), aj.tolist(), map(tuple, aS.tolist()))), (ours, ai, aj)
        print(len(ours))
        """)
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert child.stdout.strip() == "8"


def test_calculator_refuses_a_far_atom(checkpoint):
    child = in_child(f"""
        from ase.build import molecule
        from leignn_plugin.errors import StructureError
        from leignn_plugin.md.calculator import LEIGNNCalculator
        atoms = molecule("CH4")
        atoms.positions[2] = [0.0, 0.0, 1e8]
        atoms.calc = LEIGNNCalculator("{checkpoint}")
        try:
            atoms.get_potential_energy()
        except StructureError as err:
            print(err)
        """)
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert child.stdout.strip().startswith("CH4 (5 atoms): atoms 2 and 3 are 1e+08 Å apart along z")


@pytest.mark.parametrize("kind", ["an atom 1e8 Å away", "a singular periodic cell"])
def test_md_run_refuses_what_the_search_cannot_take(kind, checkpoint, tmp_path, bad_input):
    atoms = molecule("CH4") if kind == "an atom 1e8 Å away" else copper()
    if kind == "an atom 1e8 Å away":
        atoms.positions[1] = [1e8, 0.0, 0.0]
    else:
        atoms.cell[2] = 0.0
    structure = tmp_path / "start.extxyz"
    write(structure, atoms)
    proc = run([str(BIN / "leignn-md"), "run", "--checkpoint", str(checkpoint), "--structure", str(structure),
                "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"])
    line = error_line(proc.returncode, proc.stderr, "leignn-md")
    expected = ("atoms 1 and 2 are 1e+08 Å apart along x, which is not periodic" if kind == "an atom 1e8 Å away"
                else "periodic along axis 2 but the cell is degenerate in that direction (0 Å between its faces")
    assert line.startswith(f"leignn-md: error: {structure} (frame -1): {expected}"), line
    assert not (tmp_path / "run").exists()
    bad_input(f"{kind} in an MD start structure", "leignn-md run --checkpoint CKPT --structure FILE --out RUN", line)


def test_from_ase_refuses_a_far_atom(tmp_path, bad_input):
    atoms = molecule("CH4")
    atoms.positions[3] = [0.0, 2e5, 0.0]
    source = tmp_path / "far.extxyz"
    write(source, [labelled(molecule("CH4")), labelled(atoms)])
    proc = run([str(BIN / "leignn-data"), "from-ase", str(source), "--out", str(tmp_path / "ds"), "--quiet"])
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert line.startswith(f"leignn-data: error: {source}: frame 1: atoms 2 and 3 are 2e+05 Å apart along y")
    assert not (tmp_path / "ds").exists()
    bad_input("an atom 2e5 Å away in a structure file", "leignn-data from-ase FILE --out DIR", line)


def test_training_on_a_far_atom_ends_with_one_line(checkpoint, tmp_path, bad_input):
    """main.py --mode train on a frame with an atom 1e8 Å away: one line naming the frame, not a SIGFPE."""
    far = molecule("CH4")
    far.positions[4] = [1e8, 0.0, 0.0]
    data = write_dataset(tmp_path / "data", [molecule("CH4"), far, molecule("CH4")])
    config = write_config(tmp_path / "train.yml", {"train": {"src": str(data)}})
    proc = run([sys.executable, "main.py", "--mode", "train", "--config-yml", str(config), "--cpu",
                "--run-dir", str(tmp_path / "runs")])
    assert proc.returncode != -8, "SIGFPE in the neighbour search"
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert line.startswith("leignn: error: structure 0 of the batch (sid 1, fid 0): atoms 2 and 4 are 1e+08 Å "
                           "apart along x, which is not periodic"), line
    bad_input("an atom 1e8 Å away in a training frame", "python main.py --mode train --config-yml CFG", line)
