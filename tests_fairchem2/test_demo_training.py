"""``fairchem -c`` end to end: the demo configs train on the demo data, and their checkpoints predict
through ``load_predict_unit`` + ``FAIRChemCalculator`` (energy, forces, and stress of the conservative
model, checked against finite differences of its own energy). ``leignn-fairchem2 train`` shows a bar and
a line per epoch instead of fairchem's raw log, and ``make demo-fairchem2`` ends as ``make demo`` does."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from ase import Atoms
from ase.db import connect
from conftest import data_overrides, run
from fairchem.core import FAIRChemCalculator
from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

from leignn_plugin.core.options import OptionError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit, read_inference_checkpoint
from leignn_plugin.fairchem2.train_progress import RECORD_NAME, TrainingLog
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


RAW_DICT = "{'train/loss'"
"""How fairchem's own log shows a training step (``INFO:root:{'train/loss': ...}``)."""


def train_once(demo_data, run_dir, *flags: str):
    """The demo config for one epoch of a few large batches on the small demo split."""
    return run(["leignn-fairchem2", "train", "-c", "configs/fairchem2/demo.yaml", *flags, *data_overrides(demo_data),
                f"job.run_dir={run_dir}", "++job.timestamp_id=once", "epochs=1", "max_atoms=400"])


def test_train_shows_a_bar_and_epoch_lines_not_fairchems_log(demo_data, tmp_path):
    done = train_once(demo_data, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert RAW_DICT not in output and "INFO:" not in output, output[-3000:]
    assert "pin_memory" not in output and "broadcast_buffers" not in output
    (epoch_line,) = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("epoch ")]
    assert epoch_line.startswith("epoch 1/1 (step ") and "train/loss: " in epoch_line and "val/loss: " in epoch_line
    assert "training:" in done.stderr  # the bar
    assert "inference checkpoint: " in done.stdout
    record = [json.loads(line) for line in (tmp_path / "once" / "logs" / RECORD_NAME).read_text().splitlines()]
    assert next(e["step"] for e in record if "train/loss" in e) == 1
    assert [e for e in record if "val/loss" in e], record


@pytest.mark.slow
def test_train_verbose_keeps_fairchems_log(demo_data, tmp_path):
    done = train_once(demo_data, tmp_path, "--verbose")
    assert done.returncode == 0, done.stderr[-3000:]
    assert RAW_DICT in done.stderr and "Finished aggregating metrics" in done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert (tmp_path / "once" / "logs" / RECORD_NAME).is_file()


def test_training_log_reads_fairchems_records(tmp_path):
    """The records fairchem and torchtnt log, as they log them, make the bar's steps, the epoch lines
    and the record file; records it does not know pass."""
    reader = TrainingLog(epochs=2, max_steps=None, record=tmp_path / RECORD_NAME, show=False)

    def log(message, name="root", args=()):
        reader.handle(logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None))

    log("Train Dataloader size %d", args=(4,))
    for step in range(8):
        if step % 2 == 0:
            log({"train/loss": 10.0 - step, "train/lr": 1e-3, "train/step": step, "train/epoch": step / 4})
        if step % 4 == 3:
            log("Reached end of train dataloader", "torchtnt.framework.train")
            log("Done eval epoch, aggregating metrics")
            log(f"Finished aggregating metrics: \n  val/atoms_per_second: 10.0\n  val/data.val,forces,mae: "
                f"{0.5 - step / 100:.4f}\n  val/epoch: 0.0000\n  val/loss: {3.0 - step / 10:.4f}\n")
            log(f"After train epoch, train progress: num_epochs_completed = {step // 4 + 1}, "
                f"num_steps_completed = {step + 1}", "torchtnt.framework.train")
        log("Saved dcp checkpoint to somewhere")
    log("Training Completed 8 steps")
    reader.close()
    assert reader.epoch_lines == [
        "epoch 1/2 (step 4, 0 s)  train/loss: 9  val/loss: 2.7000  val forces mae: 0.47",
        "epoch 2/2 (step 8, 0 s)  train/loss: 5  val/loss: 2.3000  val forces mae: 0.43",
    ]
    record = [json.loads(line) for line in (tmp_path / RECORD_NAME).read_text().splitlines()]
    assert [(e["step"], e.get("train/loss"), e.get("val/loss")) for e in record] == [
        (1, 10.0, None), (3, 8.0, None), (4, None, 2.7), (5, 6.0, None), (7, 4.0, None), (8, None, 2.3)]


@pytest.mark.slow
def test_demo_fairchem2_ends_like_the_110_demo_and_runs_again(demo_data, tmp_path):
    """``make demo-fairchem2`` (on the small data, one epoch): the summary, the ending block with the 1.10
    demo's numbers beside its own, the plots and the energy file; again in the same folder."""
    shutil.copytree(demo_data, tmp_path / "data_aselmdb")
    fake_110 = {"data_version": json.loads((demo_data / "manifest.json").read_text())["data_version"],
                "test": {"energy_mae": 0.1, "forces_mae": 0.04, "forces_mae_above_1": 0.2,
                         "frames": len(frames(demo_data, "test"))}}
    (tmp_path / "summary.json").write_text(json.dumps(fake_110))
    outputs = []
    for _ in range(2):
        done = run(["python", "-m", "leignn_plugin.fairchem2.demo", "--out", str(tmp_path), "--size",
                    "small", "--epochs", "1"])
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
        summary = json.loads((tmp_path / "summary_fairchem2.json").read_text())
        for key in ("energy_mae", "forces_mae", "forces_mae_above_1", "force_components_above_1", "frames"):
            assert key in summary["test"] and key in summary["conservative"]["test"], key
        assert summary["test"]["frames"] == len(frames(demo_data, "test"))
        assert all((tmp_path / "fairchem2_plots" / name).stat().st_size > 1000 for name in (
            "parity_test.png", "training_loss_direct.png", "training_loss_conservative.png", "nve_energy.png"))
        table = np.loadtxt(tmp_path / "lammps" / "nve_energy.dat", ndmin=2)
        assert table[0, 0] == 0 and (table[:, 2] != 0).all()
        assert summary["lammps"]["total_energy_drift_eV"] == pytest.approx(np.abs(table[:, 3] - table[0, 3]).max())
    assert RAW_DICT not in "".join(outputs)
    assert "  fairchem 1.10 demo: test energy MAE 0.100 eV, force MAE 0.040 eV/Å" in outputs[-1]
    assert "LEIGNN fairchem 2.x demo finished" in outputs[-1] and "  energy file: " in outputs[-1]
    assert sorted(p.name for p in (tmp_path / "fairchem2_runs").iterdir()) == [
        "demo_conservative", "demo_conservative-2", "demo_direct", "demo_direct-2"]
