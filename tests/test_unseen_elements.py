"""No silent extrapolation to unseen elements (issue 21, item 9).

Checkpoints record which elements the training data held (``leignn_plugin.core.elements``): training
through ``main.py`` records exactly those, two DDP ranks record the union of theirs, and the hydra
conversion keeps the record. The calculator, ``leignn-md run``, ``main.py --mode predict`` and
run-relaxations warn once, in one line naming the elements, about a structure holding others. Older
checkpoints, written before the record, load as before and never warn.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from ase.io import read, write
from test_md_models import TrainedModels, trained_models

from leignn_plugin.checkpoints import load_potential
from leignn_plugin.core import AtomGraph, LEIGNNPotential
from leignn_plugin.data.atoms_to_data import FrameConverter
from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.lmdb_writer import write_lmdb_shards
from leignn_plugin.fairchem1 import LEIGNN
from leignn_plugin.fairchem1.harness import atoms_batch
from leignn_plugin.fairchem1.hydra_conversion import convert_checkpoint
from leignn_plugin.graph import neighbor_graph
from leignn_plugin.md.calculator import LEIGNNCalculator

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
MODEL = {"name": "leignn", "hidden_channels": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0,
         "max_neighbors": 30, "num_elements": 30}
CU, NI, AL, ZN = 29, 28, 13, 30


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("leignn: warning: a structure holds")]


def copper(*others: int) -> Atoms:
    """A 4-atom fcc Cu cell with its first atoms replaced by ``others``."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.numbers[:len(others)] = others
    return atoms


@pytest.fixture(scope="session")
def md_models(tmp_path_factory) -> TrainedModels:
    """The tiny models ``main.py`` trains on Cu/Ni cells (shared with the MD tests)."""
    return trained_models(tmp_path_factory.getbasetemp() / "md_models")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A fairchem checkpoint of a tiny LEIGNN whose training batches held Cu and Ni."""
    torch.manual_seed(0)
    model = LEIGNN(**{k: v for k, v in MODEL.items() if k != "name"}).train()
    model(atoms_batch([copper(NI)], torch.float32))  # a training forward marks the batch's elements
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    torch.save({"config": {"model": MODEL}, "state_dict": state, "normalizers": {}, "elementrefs": {},
                "epoch": 0, "step": 0, "ema": None}, path)
    return path


def write_dataset(folder: Path, structures: list[Atoms]) -> Path:
    """An S2EF LMDB of ``structures`` with zero labels."""
    converter = FrameConverter(Convention.FAIRCHEM)
    frames = (Frame(atoms, -1.0, np.zeros((len(atoms), 3)), None, sid, 0, f"frame {sid}")
              for sid, atoms in enumerate(structures))
    write_lmdb_shards((converter.convert(frame) for frame in frames), folder, progress=False)
    return folder


def main_py(mode: str, datasets: dict, checkpoint: Path, run_dir: Path, task: dict | None = None):
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
    path = run_dir.parent / f"{mode}.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "main.py", "--mode", mode, "--config-yml", str(path), "--cpu",
                           "--checkpoint", str(checkpoint), "--run-dir", str(run_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_main_py_training_records_exactly_its_elements(md_models, tmp_path):
    """The tiny models were trained through main.py on Cu/Ni cells only; the hydra conversion keeps it."""
    for path in (md_models.conservative, md_models.conservative_best, md_models.direct):
        assert "module.backbone.element_record.seen" in torch.load(path, weights_only=True)["state_dict"]
        assert load_potential(path).trained_elements == (NI, CU)
    hydra = convert_checkpoint(md_models.direct, tmp_path / "hydra.pt")
    assert load_potential(hydra).trained_elements == (NI, CU)


def test_calculator_warns_once_per_unseen_element(checkpoint, capfd):
    calc = LEIGNNCalculator(checkpoint)
    assert calc.potential.trained_elements == (NI, CU)
    for atoms in (copper(), copper(NI)):
        atoms.calc = calc
        atoms.get_potential_energy()
    assert warnings_in(capfd.readouterr().err) == []

    for numbers in ((AL,), (AL,), (AL, ZN), (ZN, NI)):
        atoms = copper(*numbers)
        atoms.calc = calc
        atoms.get_forces()
    assert warnings_in(capfd.readouterr().err) == [
        f"leignn: warning: a structure holds Al, which the training data of {checkpoint} did not (trained on "
        "Cu, Ni): its predictions are extrapolations",
        f"leignn: warning: a structure holds Zn, which the training data of {checkpoint} did not (trained on "
        "Cu, Ni): its predictions are extrapolations",
    ]


def test_md_run_warns_once(checkpoint, tmp_path, capfd):
    from leignn_plugin.md.cli import main as md_main

    structure = tmp_path / "cu_al.extxyz"
    write(structure, copper(AL) * (2, 2, 2))
    code = md_main(["run", "--checkpoint", str(checkpoint), "--structure", str(structure), "--steps", "3",
                    "--ensemble", "nve", "--interval", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    (line,) = warnings_in(capfd.readouterr().err)
    assert line.startswith(f"leignn: warning: a structure holds Al, which the training data of {checkpoint}")


def test_main_py_predict_warns_once(checkpoint, tmp_path):
    data = write_dataset(tmp_path / "test", [copper(), copper(AL), copper(AL), copper(NI)])
    proc = main_py("predict", {"test": {"src": str(data)}}, checkpoint, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = warnings_in(proc.stderr)
    assert line.startswith("leignn: warning: a structure holds Al, which the training data of ")
    assert line.endswith(" did not (trained on Cu, Ni): its predictions are extrapolations")


def test_run_relaxations_warn_once(checkpoint, tmp_path):
    data = write_dataset(tmp_path / "relax", [copper(ZN), copper(ZN)])
    task = {"relaxation_steps": 2, "relax_opt": {"traj_dir": str(tmp_path / "trajectories")}, "write_pos": True}
    proc = main_py("run-relaxations", {"relax": {"src": str(data)}}, checkpoint, tmp_path / "runs", task)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = warnings_in(proc.stderr)
    assert line.startswith("leignn: warning: a structure holds Zn, which the training data of ")


def test_older_checkpoints_load_as_before_and_do_not_warn(capfd):
    demo = FIXTURES / "demo_checkpoint" / "checkpoint.pt"
    calc = LEIGNNCalculator(demo)
    assert calc.potential.trained_elements is None
    for atoms in read(FIXTURES / "demo_checkpoint" / "frames.extxyz", ":2"):
        atoms.numbers[0] = AL  # not in the demo data
        atoms.calc = calc
        atoms.get_potential_energy()
    assert warnings_in(capfd.readouterr().err) == []

    options = json.loads((FIXTURES / "frozen" / "outputs.json").read_text())["direct"]["options"]
    model = LEIGNN(**options)
    model.load_state_dict(torch.load(FIXTURES / "frozen" / "direct.pt", weights_only=True), strict=True)
    assert model.trained_elements is None


def molecule_graph(numbers: list[int]) -> AtomGraph:
    """A bent 3-atom molecule (no cell) with its edges."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.6, 0.3]])
    cell, pbc = torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.bool)
    graph = neighbor_graph(pos, cell, pbc, torch.tensor([3]), cutoff=4.0, max_neighbors=20)
    return AtomGraph(numbers=torch.tensor(numbers), pos=pos, cell=cell, pbc=pbc, batch=torch.zeros(3, dtype=torch.long),
                     edge_index=graph.edge_index, cell_offsets=graph.cell_offsets)


def test_the_record_marks_in_training_and_warns_in_inference_only(capfd):
    """A fresh model warns about nothing; training marks; the process that trains (and validates) a model
    does not warn, a model loaded from its weights does; copies (an EMA model, a compiled copy) share it."""
    options = dict(hidden_channels=8, num_layers=1, num_rbf=4, cutoff=4.0, num_elements=30)
    trained = LEIGNNPotential(**options)
    trained.eval()(molecule_graph([AL, AL, ZN]))
    assert trained.backbone.trained_elements is None
    ema = copy.deepcopy(trained)  # fairchem 2.x copies its EMA model before training

    trained.train()(molecule_graph([CU, CU, NI]))
    ema.load_state_dict(trained.state_dict())  # as AveragedModel copies the buffers after each step
    for model in (trained, ema):  # validation inside the training process
        model.eval()(molecule_graph([AL, CU, ZN]))
        assert model.backbone.trained_elements == (NI, CU)
    assert warnings_in(capfd.readouterr().err) == []

    loaded = LEIGNNPotential(**options)
    loaded.load_state_dict(trained.state_dict(), strict=True)
    assert loaded.backbone.trained_elements == (NI, CU)
    twin = copy.deepcopy(loaded.eval())  # e.g. a compiled copy
    for model, numbers in ((loaded, [AL, CU, CU]), (twin, [AL, CU, CU]), (twin, [ZN, CU, ZN]), (loaded, [ZN, AL, CU])):
        model(molecule_graph(numbers))
    lines = warnings_in(capfd.readouterr().err)
    assert [line.split(",")[0] for line in lines] == ["leignn: warning: a structure holds Al",
                                                     "leignn: warning: a structure holds Zn"]
    assert "the training data of this model did not (trained on Cu, Ni)" in lines[0]


WORKER = """
import json, sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from leignn_plugin.core import AtomGraph, LEIGNNPotential
from leignn_plugin.graph import neighbor_graph

rank, port, broadcast = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "on"
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
torch.manual_seed(0)
model = LEIGNNPotential(hidden_channels=8, num_layers=1, num_rbf=4, cutoff=4.0, num_elements=30).train()
ddp = DistributedDataParallel(model, broadcast_buffers=broadcast)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
pos, cell, pbc = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [0, 1.6, 0.3]]), torch.zeros(1, 3, 3), torch.zeros(1, 3).bool()
edges = neighbor_graph(pos, cell, pbc, torch.tensor([3]), cutoff=4.0, max_neighbors=20)
for numbers in ([[29, 29, 28], [13, 13, 29]], [[13, 30, 30], [29, 28, 28]])[rank]:  # two steps per rank
    graph = AtomGraph(torch.tensor(numbers), pos, cell, pbc, torch.zeros(3).long(), edges.edge_index, edges.cell_offsets)
    out = ddp(graph)
    (out["energy"].sum() + out["forces"].square().sum()).backward()
    optimizer.step()
    optimizer.zero_grad()
print(json.dumps(model.backbone.trained_elements))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("broadcast", ["on", "off"], ids=["broadcast_buffers", "rank_buffers"])
def test_two_ranks_record_the_union_of_their_elements(broadcast):
    """DDP (fairchem 1.10: buffers broadcast from rank 0 before every forward; fairchem 2.x: each rank
    keeps its own, rank 0 saves) must keep the elements only rank 1 saw."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(port), broadcast], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [rank.communicate(timeout=300) for rank in ranks]
    for rank, (stdout, stderr) in zip(ranks, outputs):
        assert rank.returncode == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1]) == [AL, NI, CU, ZN]
