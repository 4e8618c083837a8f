"""``leignn-bench`` in the fairchem 2.x environment: LEIGNN and its ablations against fairchem 2.x's own
eSCN-MD backbone (UMA-small size), MD scaling and the compiled path on the 2.x model; the accuracy
benchmark, which trains through main.py, says where it runs."""

from __future__ import annotations

import json

from conftest import run

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


def test_accuracy_says_it_needs_the_1x_environment(tmp_path, bad_input):
    done = run(["leignn-bench", "accuracy", "--quick", "--out", str(tmp_path / "acc")])
    line = error_line(done.returncode, done.stderr, "leignn-bench")
    assert line.endswith("run it in the fairchem 1.10 environment (.venv, make install)")
    assert not (tmp_path / "acc").exists()
    bad_input("leignn-bench accuracy in the fairchem 2.x environment", "leignn-bench accuracy (.venv-fairchem2)", line)
