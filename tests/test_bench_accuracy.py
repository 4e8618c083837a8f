"""``leignn-bench accuracy``: configs for every model, the metrics, the curves, the report, the option errors
(fast), and the quick run end to end with the ablation configs trained through main.py (slow)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from leignn_plugin.bench.accuracy import metrics
from leignn_plugin.bench.accuracy.configs import Recipe, Splits, write_configs
from leignn_plugin.bench.accuracy.extensivity import REPEATS, CellCheck, supercell
from leignn_plugin.bench.accuracy.models import DEFAULT_SIZE, MODELS, QUICK_SIZE, resolve
from leignn_plugin.bench.cli import main
from leignn_plugin.workflows.fairchem_runs import REPO_ROOT

SLABS = Splits(train=REPO_ROOT / "demo_out/data/oc20_s2ef/train", val=REPO_ROOT / "demo_out/data/oc20_s2ef/val",
               test=REPO_ROOT / "demo_out/data/oc20_s2ef/test", description="demo slabs",
               sizes={"train": 1736, "val": 214, "test": 205}, key_mapping={"y": "energy", "force": "forces"})


def _load(path: Path) -> dict:
    """The config main.py builds from ``path`` (includes resolved by fairchem's own loader)."""
    from fairchem.core.common.utils import load_config

    config, _, errors = load_config(str(path))
    assert not errors
    return config


@pytest.mark.parametrize("size", [DEFAULT_SIZE, QUICK_SIZE], ids=["default", "quick"])
def test_every_model_gets_a_config_main_py_accepts(tmp_path, size):
    """One base for all, only the model section differs; each passes main.py's config check and builds."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import setup_imports

    import leignn_plugin  # noqa: F401
    from leignn_plugin.fairchem1.config_check import check_config

    setup_imports()
    models = resolve(list(MODELS))
    written = write_configs(tmp_path, models, size, SLABS, Recipe(epochs=5), REPO_ROOT)
    assert set(written) == set(MODELS) and (tmp_path / "base.yml").is_file()
    configs = {name: _load(path) for name, path in written.items()}
    shared = {k: v for k, v in configs["leignn"].items() if k != "model"}
    assert shared["optim"]["T_max"] == 5 * 109 and shared["optim"]["max_epochs"] == 5
    assert shared["dataset"]["train"]["src"] == "demo_out/data/oc20_s2ef/train"  # relative to the repository
    assert shared["dataset"]["train"]["transforms"]["normalizer"]["fit"]["targets"]["energy"] == {"mean": 0.0}
    for name, config in configs.items():
        assert {k: v for k, v in config.items() if k != "model"} == shared, name
        check_config(config, [], written[name])  # raises UsageError for a key or option main.py would refuse
        section = dict(config["model"])
        model = registry.get_model_class(section.pop("name"))(**section)
        assert sum(p.numel() for p in model.parameters()) > 0
    leignn, painn, gemnet = configs["leignn"]["model"], configs["painn"]["model"], configs["gemnet-oc"]["model"]
    assert (leignn["hidden_channels"], leignn["num_layers"], leignn["cutoff"], leignn["max_neighbors"]) == (
        painn["hidden_channels"], painn["num_layers"], painn["cutoff"], painn["max_neighbors"])
    assert (gemnet["emb_size_atom"], gemnet["num_blocks"], gemnet["max_neighbors"]) == (
        size.width, size.depth, size.max_neighbors)
    assert configs["vanilla"]["model"]["virtual_node"] is False
    assert configs["vanilla"]["model"]["node_update"] == "painn"
    assert configs["vanilla-nmu"]["model"]["node_update"] == "nmu"
    assert "--config-yml" in written["schnet"].read_text().splitlines()[2]


def test_metrics_on_known_arrays():
    forces = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    assert metrics.force_cosine(forces, 2 * forces) == pytest.approx(1.0)
    assert metrics.force_cosine(forces, -forces) == pytest.approx(-1.0)
    assert metrics.force_cosine(forces, np.roll(forces, 1, axis=1)) == pytest.approx(0.0)
    assert metrics.force_mae(forces, forces + 0.5) == pytest.approx(0.5)
    assert metrics.energy_mae(np.array([1.0, 2.0]), np.array([1.5, 1.0])) == pytest.approx(0.75)
    ref_f = np.zeros((5, 3))
    pred_f = ref_f.copy()
    pred_f[2, 1] = 0.03  # frame 1's second atom: exactly at the threshold fails (strictly within)
    pred_f[4, 0] = 0.029
    energy, ref_e = np.array([0.0, 0.0, 0.019, 0.0]), np.array([0.0, 0.0, 0.0, 0.021])
    per_frame = np.array([1, 2, 2, 0])  # the last frame has no free atom: judged on its energy
    assert metrics.efwt(energy, ref_e, pred_f, ref_f, per_frame) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="force rows"):
        metrics.efwt(energy, ref_e, pred_f, ref_f, np.array([1, 1, 1, 1]))
    assert metrics.mean_spread([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert metrics.mean_spread([4.0]) == (4.0, None)
    assert metrics.mean_spread([None]) == (None, None)


def test_metrics_agree_with_fairchem_evaluator():
    """EFwT and cosine are OC20's, as fairchem's evaluator computes them."""
    from fairchem.core.modules.evaluator import cosine_similarity, energy_forces_within_threshold

    rng = np.random.default_rng(0)
    natoms = np.array([3, 5, 2, 4])
    ref_f = rng.normal(size=(natoms.sum(), 3))
    pred_f = ref_f + rng.normal(scale=0.01, size=ref_f.shape)
    ref_e = rng.normal(size=4)
    pred_e = ref_e + np.array([0.005, 0.03, 0.001, 0.0])
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    ours = metrics.efwt(pred_e, ref_e, pred_f, ref_f, natoms)
    theirs = energy_forces_within_threshold({"energy": t(pred_e), "forces": t(pred_f)},
                                            {"energy": t(ref_e), "forces": t(ref_f), "natoms": torch.as_tensor(natoms)})
    assert ours == pytest.approx(theirs["metric"])
    cos = cosine_similarity({"forces": t(pred_f)}, {"forces": t(ref_f)}, key="forces")
    assert metrics.force_cosine(pred_f, ref_f) == pytest.approx(float(cos["metric"]))


def test_atoms_per_frame_reads_fairchem_chunk_index(tmp_path):
    path = tmp_path / "s2ef_predictions.npz"
    np.savez(path, ids=np.array(["0_0", "0_1", "1_0"]), energy=np.zeros(3), forces=np.zeros((9, 3)),
             chunk_idx=np.cumsum([2, 3, 4])[:-1])
    assert metrics.atoms_per_frame(path).tolist() == [2, 3, 4]


def test_supercells_and_deviations():
    from ase.build import bulk, molecule

    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert len(supercell(cell, 3, 6.0)) == 12 and supercell(cell, 3, 6.0).cell[0, 0] == pytest.approx(10.8)
    water = molecule("H2O")
    copies = supercell(water, 2, 5.0)
    gap = copies.positions[3:, 0].min() - copies.positions[:3, 0].max()
    assert len(copies) == 6 and gap > 5.0
    exact = CellCheck("x", 4, [-2.0 * n for n in REPEATS])
    assert exact.max_relative == 0.0 and exact.max_per_atom == 0.0
    off = CellCheck("x", 2, [-1.0, -2.0, -3.0, -4.2])
    assert off.max_relative == pytest.approx(0.2 / 4) and off.max_per_atom == pytest.approx(0.2 / 8)


def _synthetic_results():
    from leignn_plugin.bench.accuracy.runner import ModelResult, SeedRun

    rng = np.random.default_rng(1)
    results = []
    for k, name in enumerate(("leignn", "painn", "dimenet++")):
        result = ModelResult(MODELS[name], Path(f"configs/{name}.yml"), {"name": name})
        if name == "dimenet++":
            result.status = "skipped: projected 90.0 min of training per seed, over the limit of 15 min (--time-limit)"
            results.append(result)
            continue
        for seed in (0, 1):
            ref = rng.normal(size=20)
            pairs = {"energy": ref + 0.1, "ref_energy": ref, "forces": rng.normal(size=(50, 3)),
                     "ref_forces": rng.normal(size=(50, 3))}
            curve = [{"epoch": e, "wall_s": 10.0 * e * (k + 1), "forces_mae": 0.2 / (e + 1), "energy_mae": 0.5}
                     for e in range(4)]
            ext = {"max_relative_deviation": 1e-7, "max_deviation_per_atom": 1e-8,
                   "cells": [{"cell": "Cu fcc", "max_relative_deviation": 1e-7, "max_deviation_per_atom": 1e-8}]}
            result.runs.append(SeedRun(
                seed=seed, params=1000 * (k + 1),
                test={"energy_mae": 0.1 + 0.01 * seed, "forces_mae": 0.05, "forces_cosine": 0.9, "efwt": 0.1,
                      "frames": 20},
                untrained_test={"energy_mae": 0.5, "forces_mae": 0.2}, untrained_val={"forces_mae": 0.2},
                val_curve=curve, epoch_time_s=3.0, train_process_s=20.0, inference_s_per_structure=0.002,
                extensivity=ext, extensivity_reader="test", checkpoint="c.pt", predictions="p.npz",
                untrained_predictions="u.npz", command=f"python main.py --mode train --seed {seed}", pairs=pairs))
        results.append(result)
    return results


def test_table_json_and_figures_from_results(tmp_path):
    from leignn_plugin.bench.accuracy import report
    from leignn_plugin.bench.accuracy.runner import Plan

    results = _synthetic_results()
    table = report.results_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| LEIGNN | 1,000 | 0.105 ± 0.00707 | 0.05 ± 0 |" in table
    assert "| 10.0 ± 0.0 |" in table and "| 1.0e-07 |" in table
    assert "skipped: projected 90.0 min" in lines[-1]
    assert report.format_pm(None, None, ".3g") == "-" and report.format_pm(1.23456, None, ".3g") == "1.23"
    prov = report.provenance(["accuracy", "--quick"], 2)
    assert prov["command"] == "leignn-bench accuracy --quick" and prov["torch"].startswith("2.")
    assert "leignn-bench accuracy --quick" in report.footer(prov)
    plan = Plan(models=[r.model for r in results], seeds=[0, 1], size=QUICK_SIZE, recipe=Recipe(epochs=3),
                splits=SLABS, out=tmp_path, runs=tmp_path / "runs", time_limit_min=15.0, cells_source="bulk")
    text = report.markdown(plan, results, prov, 60.0)
    assert "- command: `leignn-bench accuracy --quick`" in text and "### Skipped or failed" in text
    assert "mean ± sample standard deviation" in text and "![parity](parity.png)" in text
    payload = report.to_json(plan, results, prov, 60.0)
    report.write_json(tmp_path / "accuracy.json", payload)
    loaded = json.loads((tmp_path / "accuracy.json").read_text())
    assert loaded["models"][0]["summary"]["forces_mae"]["mean"] == pytest.approx(0.05)
    assert loaded["models"][2]["status"].startswith("skipped") and loaded["models"][2]["runs"] == []
    for figure in (report.curves_figure(results, tmp_path / "curves.png", "title", prov),
                   report.parity_figure(results, tmp_path / "parity.png", "title", prov)):
        assert figure.stat().st_size > 10_000


def test_learning_curve_from_tensorboard_events(tmp_path):
    """Epoch time from the logged step times (validation pauses left out); wall time of each validation."""
    from torch.utils.tensorboard import SummaryWriter

    from leignn_plugin.bench.accuracy.runner import learning_curve

    writer = SummaryWriter(str(tmp_path))
    wall = 1000.0
    for step in range(1, 9):  # 2 epochs of 4 steps, 2 s per step, a 30 s validation after each epoch
        wall += 2.0
        writer.add_scalar("train/epoch", step / 4, step, walltime=wall)
        if step % 4 == 0:
            wall += 30.0
            writer.add_scalar("val/forces_mae", 0.1 / step, step, walltime=wall)
            writer.add_scalar("val/energy_mae", 1.0 / step, step, walltime=wall)
    writer.close()
    curve, epoch_s = learning_curve(tmp_path, steps_per_epoch=4)
    assert epoch_s == pytest.approx(8.0)
    assert [p["epoch"] for p in curve] == [1.0, 2.0]
    assert [p["wall_s"] for p in curve] == pytest.approx([38.0, 76.0])  # training began at 1000 s
    assert curve[1]["forces_mae"] == pytest.approx(0.1 / 8) and curve[0]["energy_mae"] == pytest.approx(0.25)


@pytest.mark.parametrize("args, expected", [
    (["--train", "x"], "--train needs --val and --test as well"),
    (["--seeds", "0,a"], "--seeds: expected comma-separated integers"),
    (["--seeds", "-1"], "--seeds: expected non-negative integers"),
    (["--models", "leignn,nope"], "--models: unknown model(s) nope: choose from leignn, vanilla"),
    (["--width", "15"], "--width must be even"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--device", "cuda:0"], "--device cuda"),
    (["--data", "x", "--train", "a", "--val", "b", "--test", "c"], "exclude each other"),
])
def test_option_errors_are_one_line(tmp_path, capsys, args, expected):
    assert main(["accuracy", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leignn-bench: error: ") and "\n" not in err, err
    assert expected in err


def test_data_errors_are_one_line(tmp_path, capsys):
    """A missing LMDB and a folder that is not demo data: one line each, nothing trained."""
    missing = tmp_path / "missing"
    assert main(["accuracy", "--train", str(missing), "--val", str(missing), "--test", str(missing),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"leignn-bench: error: --train: {missing} does not exist"
    (tmp_path / "notdemo").mkdir()
    assert main(["accuracy", "--data", str(tmp_path / "notdemo"), "--out", str(tmp_path / "out")]) == 2
    assert "holds no demo data (no manifest.json)" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_writes_the_report_and_every_model_learns(demo_data, tmp_path, capsys):
    """``--quick`` end to end on the small demo data: table, JSON, configs and figures; every trained model's
    test force MAE below its untrained one; LEIGNN's energy extensive to float32 rounding."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert main(["accuracy", "--quick", "--data", str(demo_data), "--out", str(out), "--runs", str(runs)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "accuracy.json").read_text())
    by_name = {m["name"]: m for m in data["models"]}
    assert set(by_name) == set(MODELS)
    table = (out / "accuracy.md").read_text()
    for name, model in by_name.items():
        assert (out / "configs" / f"{name}.yml").is_file()
        assert f"| {MODELS[name].label} |" in table
        if model["status"] != "ok":
            assert model["status"].startswith("skipped: projected"), model["status"]
            assert model["status"] in table and model["status"] in printed
            continue
        (run,) = model["runs"]
        assert run["test"]["forces_mae"] < run["untrained_test"]["forces_mae"], (name, run["test"], run["untrained_test"])
        assert run["val_curve"][0]["epoch"] == 0 and len(run["val_curve"]) == 3
        assert run["epoch_time_s"] > 0 and run["inference_s_per_structure"] > 0 and run["params"] > 0
        assert math.isfinite(run["extensivity"]["max_relative_deviation"])
    for name in ("leignn", "vanilla", "vanilla-nmu", "painn", "schnet"):
        assert by_name[name]["status"] == "ok", by_name[name]["status"]
    assert by_name["leignn"]["runs"][0]["extensivity"]["max_relative_deviation"] < 1e-4
    for figure in ("learning_curves.png", "parity.png"):
        assert (out / figure).stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/oc20/leignn_vanilla.yml", "configs/oc20/leignn_vanilla_nmu.yml"])
def test_ablation_configs_train_through_main_py(demo_data, tmp_path, config):
    """The paper's two ablations train through main.py exactly as the main OC20 config does."""
    s2ef = demo_data / "oc20_s2ef"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), "--mode", "train", "--config-yml", config,
                           "--cpu", f"--dataset.train.src={s2ef / 'train'}", f"--dataset.val.src={s2ef / 'val'}",
                           "--optim.max_epochs=1", "--optim.eval_every=2", "--optim.num_workers=0",
                           "--run-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("checkpoints/*/checkpoint.pt")), proc.stderr[-3000:]
    checkpoint = torch.load(next(tmp_path.glob("checkpoints/*/checkpoint.pt")), map_location="cpu", weights_only=True)
    assert checkpoint["config"]["model"]["virtual_node"] is False
    assert not any("virtual" in key or "global" in key for key in checkpoint["state_dict"])
