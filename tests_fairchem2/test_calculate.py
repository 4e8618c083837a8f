"""LEIGNN through fairchem 2.x's own calculate runners: every config of ``configs/fairchem2/calculate`` runs
with ``fairchem -c`` on the inputs ``leignn-fairchem2 calculate-inputs`` writes and the checkpoint the
conservative demo config trained, and its results are checked against the project's calculator and
against physics; a stopped MD run resumes the way fairchem documents and ends where an uninterrupted
run ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase.io.jsonio import decode
from conftest import REPO, run

from leignn_plugin.md.calculator import LEIGNNCalculator

CONFIGS = REPO / "configs" / "fairchem2" / "calculate"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("calculate") / "inputs"
    done = run(["leignn-fairchem2", "calculate-inputs", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"wrote {out}: adsorption")
    return out


def calculate(config: str, checkpoint, inputs, run_dir, *overrides: str):
    """``fairchem -c`` on one runner config; the results folder of the run."""
    done = run(["fairchem", "-c", str(CONFIGS / f"{config}.yaml"), f"checkpoint={checkpoint}", f"inputs={inputs}",
                f"job.run_dir={run_dir}", *overrides])
    assert done.returncode == 0, done.stderr[-4000:]
    folders = sorted(run_dir.glob("*/results"))
    assert len(folders) == 1, folders
    return folders[0]


def results_of(folder, pattern: str) -> pd.DataFrame:
    files = sorted(folder.glob(pattern))
    assert len(files) == 1, (pattern, sorted(folder.iterdir()))
    frame = pd.read_json(files[0])
    if "errors" in frame:
        assert (frame["errors"].fillna("") == "").all(), frame["traceback"].tolist()
    return frame


def test_relaxations_reach_the_minimum_the_calculator_sees(conservative_run, inputs, tmp_path):
    """IS2RE-style relaxations: each relaxed energy is what the project's calculator gives for the
    relaxed structure, the fixed atoms stayed put, and the forces on the free atoms are small."""
    results = results_of(calculate("relax", conservative_run.checkpoint, inputs, tmp_path), "relaxation_*.json.gz")
    assert sorted(results["sid"]) == [0, 1, 2]
    calc = LEIGNNCalculator(conservative_run.checkpoint)
    for _, row in results.iterrows():
        relaxed, initial = decode(row["atoms"]), decode(row["atoms_initial"])
        fixed = relaxed.constraints[0].get_indices()
        np.testing.assert_allclose(relaxed.positions[fixed], initial.positions[fixed], atol=1e-6)
        relaxed.calc = calc
        assert relaxed.get_potential_energy() == pytest.approx(row["energy"], abs=1e-4)
        if row["opt_converged"]:
            assert np.abs(relaxed.get_forces()).max() < 0.06
        assert np.isfinite(row["dft_relaxed_adslab_energy_target"])


def test_adsorption_energies_subtract_the_references(conservative_run, inputs, tmp_path):
    """E_ads of the model and of the reference: the relaxed energies minus the slab and gas references
    stored with each input row."""
    from fairchem.core.datasets import AseDBDataset

    results = results_of(calculate("adsorption", conservative_run.checkpoint, inputs, tmp_path),
                         "adsorption_*.json.gz")
    rows = {row.sid: row for row in results.itertuples()}
    dataset = AseDBDataset({"src": str(inputs / "adsorption")})
    assert sorted(rows) == [0, 1, 2]
    for index in range(len(dataset)):
        info = dataset.get_atoms(index).info
        row = rows[info["sid"]]
        gas, slab = info["gas_ref"], info["dft_relaxed_slab_energy"]
        assert row.hybrid == pytest.approx(row.direct - slab - gas, abs=1e-9)
        assert row.target == pytest.approx(info["dft_relaxed_adslab_energy"] - slab - gas, abs=1e-9)


def test_md_runs_and_a_stopped_run_resumes_where_it_stopped(conservative_run, inputs, tmp_path):
    """Langevin MD to step 50; with a STOPFAIR file in its folder a run saves its state at the first
    heartbeat (step 5), and ``fairchem -c .../preemption_state/resume_config.yaml`` (fairchem's resume)
    carries on to the same end as the uninterrupted run."""
    whole = calculate("md", conservative_run.checkpoint, inputs, tmp_path / "whole")
    frames = pd.read_parquet(whole / "trajectory.parquet")
    assert frames["step"].tolist() == list(range(0, 51, 5))
    assert np.isfinite(np.stack(frames.iloc[-1]["positions"])).all()
    stopped_dir = tmp_path / "stopped" / "run"
    stopped_dir.mkdir(parents=True)
    (stopped_dir / "STOPFAIR").touch()
    stopped = calculate("md", conservative_run.checkpoint, inputs, tmp_path / "stopped", "++job.timestamp_id=run")
    state = stopped_dir / "checkpoints" / "preemption_state"
    assert '"current_step": 5' in (state / "md_state.json").read_text()
    assert not (stopped_dir / "STOPFAIR").exists()
    done = run(["fairchem", "-c", str(state / "resume_config.yaml")])
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming from step 5" in done.stderr
    resumed = pd.read_parquet(stopped / "trajectory.parquet")
    assert resumed["step"].iloc[-1] == 50
    np.testing.assert_allclose(np.stack(resumed.iloc[-1]["positions"]), np.stack(frames.iloc[-1]["positions"]),
                               rtol=0, atol=1e-6)


def test_nve_md_keeps_the_total_energy(conservative_run, inputs, tmp_path):
    results = calculate("nve_md", conservative_run.checkpoint, inputs, tmp_path)
    rows = [line.split() for line in (results / "thermo_1-0.log").read_text().splitlines()[1:]]
    total = np.array([float(row[1]) for row in rows])  # Etot/N (eV) every save_frequency steps
    assert len(total) == 40 // 5 + 1
    assert np.ptp(total) < 5e-3


def test_elastic_tensor_of_fcc_copper(conservative_run, inputs, tmp_path):
    results = results_of(calculate("elastic", conservative_run.checkpoint, inputs, tmp_path), "elasticity_*.json.gz")
    tensor = np.asarray(results["elastic_tensor"].iloc[0], dtype=float)  # [6, 6] GPa
    assert tensor.shape == (6, 6)
    np.testing.assert_allclose(tensor, tensor.T, atol=1e-3 * np.abs(tensor).max())
    # cubic symmetry: C11 = C22 = C33, C12 = C13 = C23
    assert np.ptp(np.diag(tensor)[:3]) < 1e-2 * tensor[0, 0]
    assert float(results["bulk_modulus_vrh"].iloc[0]) > 0


def test_phonons_of_fcc_copper(conservative_run, inputs, tmp_path):
    results = results_of(calculate("phonons", conservative_run.checkpoint, inputs, tmp_path),
                         "mdr_phonon_*.json.gz")
    row = results.iloc[0]
    assert row["sid"] == "Cu"
    assert np.isfinite([row["max_freq"], row["entropy"], row["heat_capacity"], row["free_energy"]]).all()
    assert row["max_freq"] > row["avg_freq"] > 0
