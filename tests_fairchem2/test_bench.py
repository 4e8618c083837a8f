"""``leignn-bench`` in the fairchem 2.x environment: LEIGNN and its ablations against fairchem 2.x's own
eSCN-MD backbone (UMA-small size), MD scaling and the compiled path on the 2.x model; the accuracy
benchmark trains LEIGNN and eSCN-MD from scratch through ``fairchem -c``."""

from __future__ import annotations

import json

import pytest
from conftest import run

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.fairchem2.checkpoint import read_inference_checkpoint
from leignn_plugin.testing.commands import error_line


def test_models_against_the_uma_small_backbone(tmp_path):
    done = run(["leignn-bench", "models", "--repeats", "1", "--structures", "2", "--slab-size", "2,2,3",
                "--threads", "2", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "models.json").read_text())
    assert report["reference"] == "esen-sm"
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {"esen-sm", "leignn", "leignn-vanilla", "leignn-vanilla-nmu"}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    table = (tmp_path / "models.md").read_text()
    assert "ratios to eSEN-sm / UMA-small backbone" in table and "| LEIGNN 512x4 (c6, n20) |" in table
    assert (tmp_path / "models.png").stat().st_size > 0


def test_md_and_compiled_modes_run_on_the_2x_model(tmp_path):
    done = run(["leignn-bench", "md", "--sizes", "32", "--steps", "1", "--threads", "2", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "md.json").read_text())["points"][0]["atoms"] == 32
    done = run(["leignn-bench", "compiled", "--hidden", "16", "--layers", "1", "--structures", "1", "--slab-size",
                "2,2,2", "--repeats", "1", "--threads", "2", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    deviation = json.loads((tmp_path / "compiled.json").read_text())["max_rel_deviation"]
    assert max(deviation.values()) < 1e-4


def test_graph_parallel_mode_measures_ranks_against_one_process(tmp_path):
    done = run(["leignn-bench", "graph-parallel", "--sizes", "256", "--ranks", "2", "--steps", "1",
                "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "graph-parallel.json").read_text())["rows"]
    assert [(r["atoms"], r["ranks"]) for r in rows] == [(256, 1), (256, 2)]
    assert all(r["step_s"] > 0 and len(r["peak_rss_mib"]) == r["ranks"] for r in rows)
    table = (tmp_path / "graph-parallel.md").read_text()
    assert "| 256 | 1 |" in table and "| 256 | 2 |" in table


def test_accuracy_trains_leignn_and_the_escn_md_baseline_at_equal_budget(demo_data, tmp_path):
    """Both models trained from scratch by ``fairchem -c`` on one recipe at one size, scored on the test
    split through FAIRChemCalculator; the baseline's checkpoint is read by the project's checked loader
    as the baseline, and refused as a LEIGNN checkpoint."""
    out = tmp_path / "acc"
    done = run(["leignn-bench", "accuracy", "--quick", "--epochs", "1", "--data", str(demo_data), "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads((out / "accuracy.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["leignn", "esen_sm", "leignn-equal-time"]
    for item in runs:
        assert item["params"] > 1000 and len(item["val_losses"]) == item["epochs"] and item["train_s"] > 0
        assert 0 < item["test"]["energy_mae"] < 10 and 0 < item["test"]["forces_mae"] < 1
    leignn = read_inference_checkpoint(runs[0]["checkpoint"])
    esen = read_inference_checkpoint(runs[1]["checkpoint"], baseline=True)
    assert leignn.model_config["backbone"]["hidden_channels"] == 16 == esen.model_config["backbone"]["sphere_channels"]
    assert leignn.model_config["backbone"]["num_layers"] == 2 == esen.model_config["backbone"]["num_layers"]
    assert esen.model_config["backbone"]["model"] == "fairchem.core.models.uma.escn_md.eSCNMDBackbone"
    assert [t["normalizer"] for t in leignn.tasks_config] == [t["normalizer"] for t in esen.tasks_config]
    with pytest.raises(CheckpointError, match="not LEIGNN"):
        read_inference_checkpoint(runs[1]["checkpoint"])
    report = (out / "accuracy.md").read_text()
    assert "| LEIGNN | 1 | 1 |" in report and "LEIGNN / eSCN-MD, equal epochs: energy MAE" in report
    assert "LEIGNN / eSCN-MD, equal training time: energy MAE" in report


def test_accuracy_names_the_models_it_trains_under_2x(tmp_path, bad_input):
    done = run(["leignn-bench", "accuracy", "--quick", "--models", "leignn,painn", "--out", str(tmp_path / "acc")])
    line = error_line(done.returncode, done.stderr, "leignn-bench")
    assert line.endswith("--models: painn not trained under fairchem 2.x (choose from leignn, esen_sm)")
    assert not (tmp_path / "acc").exists()
    bad_input("a 1.10-only model for leignn-bench accuracy in the fairchem 2.x environment",
              "leignn-bench accuracy --models leignn,painn (.venv-fairchem2)", line)
