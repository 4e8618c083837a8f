"""No silent extrapolation to unseen elements under fairchem 2.x (issue 21, item 9).

A ``fairchem -c`` run records the elements of its training split in the inference checkpoint (raw and
EMA weights), the 1.10 -> 2.x converter carries a 1.10 checkpoint's record, and ``FAIRChemCalculator``
warns once, in one line naming the elements, about a structure holding others. Checkpoints written
before the record load as before and never warn.
"""

from __future__ import annotations

import torch
from ase.build import bulk
from ase.data import chemical_symbols
from ase.db import connect
from conftest import REPO, run
from fairchem.core import FAIRChemCalculator

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.fairchem2.checkpoint import load_predict_unit, read_inference_checkpoint
from leignn_plugin.fairchem2.models import LEIGNNBackbone

RECORD = "backbone.element_record.seen"
FIXTURE = REPO / "tests" / "fixtures" / "demo_checkpoint"
OPTIONS = {"hidden_channels": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0, "max_neighbors": 30,
           "num_elements": 30}
CU, NI, AL = 29, 28, 13


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("leignn: warning: a structure holds")]


def backbone_of(unit) -> LEIGNNBackbone:
    (backbone,) = [m for m in unit.model.modules() if isinstance(m, LEIGNNBackbone)]
    return backbone


def records(state: dict) -> list[torch.Tensor]:
    return [value for key, value in state.items() if key.endswith(RECORD)]


def energies(calc: FAIRChemCalculator, structures: list) -> None:
    for atoms in structures:
        atoms.calc = calc
        atoms.get_potential_energy()


def test_fairchem_run_records_its_training_elements_and_warns_once(direct_run, demo_data, capfd):
    train = sorted({int(z) for path in (demo_data / "oc20_s2ef" / "train").glob("*.aselmdb")
                    for row in connect(path).select() for z in row.numbers})
    saved = read_inference_checkpoint(direct_run.checkpoint)
    for state in (saved.model_state_dict, saved.ema_state_dict):
        (record,) = records(state)
        assert record.nonzero().flatten().tolist() == [0, *train]  # 0: the record is complete
    assert AL not in train

    unit = load_predict_unit(direct_run.checkpoint)
    assert backbone_of(unit).trained_elements == tuple(train)
    calc = FAIRChemCalculator(unit, task_name="demo")
    val = [row.toatoms() for path in sorted((demo_data / "oc20_s2ef" / "val").glob("*.aselmdb"))
           for row in connect(path).select(limit=2)]
    energies(calc, [atoms.copy() for atoms in val])
    assert warnings_in(capfd.readouterr().err) == []
    for atoms in val:
        atoms.numbers[0] = AL
    energies(calc, val)
    symbols = ", ".join(sorted(chemical_symbols[z] for z in train))
    assert warnings_in(capfd.readouterr().err) == [
        f"leignn: warning: a structure holds Al, which the training data of {direct_run.checkpoint} did not (trained on "
        f"{symbols}): its predictions are extrapolations"]


def test_converter_carries_the_record(tmp_path, capfd):
    torch.manual_seed(0)
    core = LEIGNNPotential(**OPTIONS)
    core.backbone.element_record.mark(torch.tensor([CU, NI, CU]))  # what a training batch does
    src, dst = tmp_path / "checkpoint.pt", tmp_path / "leignn.pt"
    torch.save({"config": {"model": {"name": "leignn", **OPTIONS}}, "normalizers": {}, "elementrefs": {},
                "state_dict": {f"module.{k}": v for k, v in core.state_dict().items()}}, src)
    done = run(["leignn-fairchem2", "convert", str(src), str(dst), "--dataset", "demo"])
    assert done.returncode == 0, done.stderr[-3000:]
    saved = read_inference_checkpoint(dst)
    for state in (saved.model_state_dict, saved.ema_state_dict):
        (record,) = records(state)
        assert record.nonzero().flatten().tolist() == [0, NI, CU]

    unit = load_predict_unit(dst)
    assert backbone_of(unit).trained_elements == (NI, CU)
    calc = FAIRChemCalculator(unit, task_name="demo")
    copper = bulk("Cu", "fcc", a=3.61, cubic=True)
    alloy = copper.copy()
    alloy.numbers[:2] = AL
    energies(calc, [copper, alloy, alloy.copy()])
    (line,) = warnings_in(capfd.readouterr().err)
    assert line.startswith(f"leignn: warning: a structure holds Al, which the training data of {dst} did not "
                           "(trained on Cu, Ni)")


def test_older_checkpoints_load_as_before_and_do_not_warn(tmp_path, capfd):
    """The converted demo fixture (1.10, before the record), and a 2.x checkpoint without it."""
    converted = tmp_path / "converted.pt"
    done = run(["leignn-fairchem2", "convert", str(FIXTURE / "checkpoint.pt"), str(converted), "--dataset", "oc20"])
    assert done.returncode == 0, done.stderr[-3000:]
    saved = read_inference_checkpoint(converted)
    older = tmp_path / "older.pt"
    saved.model_state_dict = {k: v for k, v in saved.model_state_dict.items() if not k.endswith(RECORD)}
    saved.ema_state_dict = {k: v for k, v in saved.ema_state_dict.items() if not k.endswith(RECORD)}
    torch.save(saved, older)

    alloy = bulk("Cu", "fcc", a=3.61, cubic=True)
    alloy.numbers[:2] = AL  # not in the demo data the fixture was trained on
    for path in (converted, older):
        unit = load_predict_unit(path)
        assert backbone_of(unit).trained_elements is None
        energies(FAIRChemCalculator(unit, task_name="oc20"), [alloy.copy()])
    assert warnings_in(capfd.readouterr().err) == []
