"""MD runs with LEIGNN: NVE energy conservation, every ensemble, the temperature guard and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from ase.io import read, write
from test_md_models import TrainedModels, cu_ni_cell, trained_models

from leignn_plugin.md.analysis.energy_drift import energy_drift
from leignn_plugin.md.analysis.trajectory import read_log
from leignn_plugin.md.cli import main
from leignn_plugin.md.ensembles import ENSEMBLES, EnsembleSettings
from leignn_plugin.md.runner import RunSettings, run_md

# Stated bound for NVE with the conservative model (32 atoms, 1 fs, 300 K, float32); measured
# drifts are about 1e-3 meV/atom/ps (see the report printed by the test).
NVE_DRIFT_BOUND = 0.5  # meV/atom/ps
NVE_DEVIATION_BOUND = 0.5  # meV/atom, largest |E_total(t) - E_total(0)|


@pytest.fixture(scope="session")
def md_models(tmp_path_factory) -> TrainedModels:
    return trained_models(tmp_path_factory.getbasetemp() / "md_models")


@pytest.fixture
def structure(tmp_path):
    path = tmp_path / "cuni.extxyz"
    write(path, cu_ni_cell(11, rattle=0.03))
    return path


def _nve(checkpoint, structure, out, steps=80, dtype="float32"):
    settings = RunSettings(checkpoint=checkpoint, structure=structure, out=out, steps=steps, dtype=dtype,
                           ensemble=EnsembleSettings("nve", timestep_fs=1.0, temperature_K=300.0),
                           interval=2, progress=False)
    result = run_md(settings)
    log = read_log(out)
    return result, log, energy_drift(log["time_ps"], log["total_energy_eV"], 32)


def test_nve_conserves_energy_with_conservative_forces(md_models, structure, tmp_path):
    result, log, drift = _nve(md_models.conservative, structure, tmp_path / "nve")
    _, _, direct = _nve(md_models.direct, structure, tmp_path / "nve_direct")
    print(f"\nNVE 80 fs, 32 atoms, float32: conservative drift {drift.drift_meV_per_atom_ps:.3g} meV/atom/ps "
          f"(max deviation {drift.max_deviation_meV_per_atom:.3g} meV/atom); direct-force drift "
          f"{direct.drift_meV_per_atom_ps:.3g} meV/atom/ps (max deviation {direct.max_deviation_meV_per_atom:.3g})")
    assert not result.stopped and result.steps_done == 80
    potential_swing = 1000.0 * np.ptp(log["potential_energy_eV"]) / 32
    assert potential_swing > 20 * drift.max_deviation_meV_per_atom  # energy really flows between terms
    assert abs(drift.drift_meV_per_atom_ps) < NVE_DRIFT_BOUND
    assert drift.max_deviation_meV_per_atom < NVE_DEVIATION_BOUND
    # direct forces are not a gradient: their total energy wanders much further (reported above)
    assert direct.max_deviation_meV_per_atom > 10 * drift.max_deviation_meV_per_atom


@pytest.mark.parametrize("ensemble", [e for e in ENSEMBLES if e != "nve"])
def test_every_ensemble_runs(md_models, structure, tmp_path, ensemble):
    out = tmp_path / ensemble
    settings = RunSettings(checkpoint=md_models.conservative, structure=structure, out=out, steps=6, interval=2,
                           ensemble=EnsembleSettings(ensemble, timestep_fs=1.0, temperature_K=600.0,
                                                     pressure_bar=5.0e4, pdamp_fs=50.0, tdamp_fs=20.0),
                           progress=False)
    result = run_md(settings)
    assert result.steps_done == 6 and not result.stopped
    frames = read(out / "md.traj", ":")
    assert len(frames) == 4
    log = read_log(out)
    assert np.all(np.isfinite(log["pressure_bar"]))  # the conservative model gives stress
    if ensemble.startswith("npt"):
        assert not np.allclose(frames[0].cell.array, frames[-1].cell.array)
    else:
        np.testing.assert_allclose(frames[0].cell.array, frames[-1].cell.array)


def test_npt_needs_a_model_with_stress(md_models, structure, tmp_path, capsys):
    code = main(["run", "--checkpoint", str(md_models.direct), "--structure", str(structure), "--ensemble", "npt",
                 "--steps", "2", "--out", str(tmp_path / "npt"), "--no-progress"])
    assert code == 2
    assert "needs stress, which this model does not give" in capsys.readouterr().err


def test_temperature_guard_stops_the_run(md_models, structure, tmp_path, capsys):
    out = tmp_path / "hot"
    code = main(["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure),
                 "--ensemble", "nvt-langevin", "--temperature", "300", "--steps", "200",
                 "--t-max", "330", "--interval", "1", "--out", str(out), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert "stopped: temperature" in err and "left the range 0.1..330 K" in err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "stopped" and 0 < info["result"]["steps_done"] < 200
    assert len(read(out / "md.traj", ":")) == info["result"]["steps_done"] + 1


def test_cli_run_then_analyze_against_itself(md_models, structure, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure),
                 "--ensemble", "nvt-langevin", "--temperature", "500", "--steps", "40", "--interval", "2",
                 "--edge-chunk-mib", "0.05", "--out", str(out), "--no-progress"])
    assert code == 0
    with open(out / "md_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 21 and float(rows[-1]["time_ps"]) == pytest.approx(0.04)
    extra = json.loads((out / "run.json").read_text())["result"]["extra"]
    assert 0.1 < extra["peak_rss_gib"] < 24 and "peak memory" in capsys.readouterr().out
    assert set(rows[0]) >= {"time_ps", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV",
                            "temperature_K", "pressure_bar"}
    capsys.readouterr()
    assert main(["analyze", str(out), "--reference", str(out), "--window", "0.01"]) == 0
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary == json.loads(capsys.readouterr().out)
    errors = summary["errors_vs_reference"]
    assert errors["rdf_mae"] == 0.0 and errors["h_r_mae"] == 0.0 and errors["diffusivity_mae_A2_per_ps"] == 0.0
    assert all(v == 0.0 for v in errors["rdf_mae_pairs"].values())
    assert all(v == 0.0 for v in errors["msd_mae_A2"].values())
    assert set(summary["diffusion"]["diffusivity_A2_per_ps"]) == {"Cu", "Ni"}
    for name in ("rdf.png", "h_r.png", "msd.png", "energy.png", "stability.png"):
        png = out / "analysis" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reports_bad_input_in_one_line(md_models, structure, tmp_path, capsys):
    cases = [
        (["run", "--checkpoint", str(tmp_path / "none.pt"), "--structure", str(structure), "--steps", "1"],
         "checkpoint not found"),
        (["run", "--checkpoint", str(md_models.conservative), "--structure", str(tmp_path / "none.xyz"),
          "--steps", "1"], "structure file not found"),
        (["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure), "--steps", "0"],
         "--steps must be an integer >= 1, got 0"),
        (["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure), "--steps", "5",
          "--temperature", "2e5"], "lies outside the sane range 0.1..100000 K"),
        (["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure), "--steps", "5",
          "--edge-chunk-mib", "-1"], "--edge-chunk-mib must be a positive number"),
        (["run", "--checkpoint", str(md_models.conservative), "--structure", str(structure), "--steps", "5",
          "--skin", "nan"], "--skin must be a number >= 0 (Å), got nan"),
        (["analyze", str(tmp_path)], "is not an MD run folder"),
    ]
    for argv, message in cases:
        if argv[0] == "run":
            argv = [*argv, "--out", str(tmp_path / "bad"), "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_run_from_an_lmdb_frame_then_continue_in_nve(md_models, tmp_path):
    first, second = tmp_path / "nvt", tmp_path / "nve"
    settings = RunSettings(checkpoint=md_models.conservative, structure=md_models.data / "test", index=1,
                           repeat=(2, 1, 1), out=first, steps=4, interval=2, progress=False,
                           ensemble=EnsembleSettings("nvt-langevin", timestep_fs=1.0, temperature_K=300.0))
    assert run_md(settings).steps_done == 4
    frames = read(first / "md.traj", ":")
    assert len(frames) == 3 and len(frames[0]) == 64
    follow = RunSettings(checkpoint=md_models.conservative, structure=first / "md.traj", out=second, steps=2,
                         interval=1, keep_velocities=True, progress=False,
                         ensemble=EnsembleSettings("nve", timestep_fs=1.0, temperature_K=300.0))
    run_md(follow)
    start = read(second / "md.traj", 0)
    np.testing.assert_allclose(start.get_momenta(), frames[-1].get_momenta())
    np.testing.assert_allclose(start.positions, frames[-1].positions)


def test_cluster_without_cell_is_analysed_with_h_of_r(md_models, tmp_path, capsys):
    from ase.cluster import Icosahedron

    cluster = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    cluster.numbers[::4] = 28
    path = tmp_path / "cluster.xyz"
    write(path, cluster)
    out = tmp_path / "cluster"
    assert main(["run", "--checkpoint", str(md_models.conservative), "--structure", str(path), "--ensemble",
                 "nvt-nose-hoover", "--steps", "8", "--interval", "2", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out), "--window", "0.004"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "rdf" not in summary and summary["stability"]["observable"] == "h(r)"
    assert not (out / "analysis" / "rdf.png").exists() and (out / "analysis" / "h_r.png").is_file()
    assert read_log(out)["pressure_bar"].size == 5 and np.all(np.isnan(read_log(out)["pressure_bar"]))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["conservative", "direct"])
def test_cli_compiled_run_follows_the_eager_run(md_models, structure, tmp_path, which):
    """`leignn-md run --compile` (inductor) writes the log the eager run writes, to float32 rounding."""
    logs = {}
    for flag in ([], ["--compile"]):
        out = tmp_path / ("compiled" if flag else "eager")
        assert main(["run", "--checkpoint", str(getattr(md_models, which)), "--structure", str(structure),
                     "--ensemble", "nve", "--temperature", "300", "--steps", "10", "--interval", "5",
                     "--out", str(out), "--no-progress", *flag]) == 0
        logs[bool(flag)] = read_log(out)
    for key in ("potential_energy_eV", "kinetic_energy_eV"):
        np.testing.assert_allclose(logs[True][key], logs[False][key], rtol=1e-5, atol=1e-5)
