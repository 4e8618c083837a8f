"""``leignn-bench gpu`` / ``make gpu-check`` under fairchem 1.10: the one line where there is no GPU, and every
part of the check on the CPU (the hidden ``--check-device cpu``: the comparison with the CPU compares the CPU
with itself, fp16 autocast with a GradScaler runs on the CPU, DDP on gloo)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from leignn_plugin.bench.amp_training import AmpResult
from leignn_plugin.bench.cli import main
from leignn_plugin.bench.ddp_step import DdpResult, run_ddp
from leignn_plugin.bench.device_parity import Deviation, deviation
from leignn_plugin.bench.gpu_check import NO_CUDA, GpuReport, markdown
from leignn_plugin.testing.commands import as_typed_by_a_person

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CPU_CHECK = ["gpu", "--check-device", "cpu", "--models", "leignn", "--structures", "1", "--slab-size", "2,2,2",
             "--repeats", "1", "--no-train", "--sizes", "32,108", "--hidden", "16", "--layers", "1", "--steps", "1",
             "--threads", "2"]
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@no_gpu_here
def test_without_a_gpu_the_command_prints_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run([str(BIN / "leignn-bench"), "gpu", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == NO_CUDA + "\n" and done.stderr == ""
    assert not out.exists()


@no_gpu_here
def test_make_gpu_check_without_a_gpu_prints_one_line(tmp_path):
    done = subprocess.run(["make", "gpu-check", f"VENV={sys.prefix}", f"VENV2={tmp_path / 'none'}"], cwd=REPO,
                          env=as_typed_by_a_person(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == NO_CUDA + "\n" and done.stderr == ""


def test_every_part_runs_on_the_cpu(tmp_path, capsys):
    assert main([*CPU_CHECK, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["ok"] and report["failures"] == []
    assert report["environment"]["fairchem_major"] == 1
    quantities = {(d["config"], d["quantity"].split(" (")[0]) for d in report["parity"]}
    assert ("conservative-stress-bessel-exponential", "stress") in quantities
    assert ("direct-gaussian-polynomial", "parameter gradients") in quantities
    assert all(d["ok"] and d["max_abs"] == 0.0 for d in report["parity"])  # the CPU against itself
    for amp in report["amp"]:  # fairchem 1.10's --amp: float16 autocast with a GradScaler
        assert amp["recipe"].startswith("fairchem 1.10 --amp") and amp["ok"], amp
        assert amp["skipped_steps"] < len(amp["step_losses"]) and all(map(math.isfinite, amp["step_losses"]))
    assert report["ddp"]["status"] == "ok" and report["ddp"]["backend"] == "gloo"
    assert {r["name"] for r in report["models"]["results"]} == {"leignn", "painn-512x4"}
    assert [p["atoms"] for p in report["md"]] == [32, 108]
    assert all(p["atom_steps_per_s"] > 0 for p in report["md"])
    text = (tmp_path / "gpu.md").read_text()
    assert "Result: all checks passed" in text and "| LEIGNN 512x4 (c6, n20) |" in text
    assert "| 108 |" in text and text in capsys.readouterr().out
    assert main([*CPU_CHECK, "--out", str(tmp_path)]) == 2  # an earlier report is kept unless --overwrite
    assert "pass --overwrite" in capsys.readouterr().err


def test_a_failed_check_ends_with_status_1_and_one_line(tmp_path, capsys, monkeypatch):
    import leignn_plugin.bench.gpu_check as gpu_check

    def failing(device, models, *args, **kwargs) -> GpuReport:
        report = GpuReport({"fairchem_major": 1, "device": str(device)})
        report.parity = [Deviation("direct", "forces", 1e-6, 1.0, 1e-9)]
        report.ddp = run_ddp("cuda") if not torch.cuda.is_available() else DdpResult("skipped: test")
        return report

    monkeypatch.setattr(gpu_check, "run_checks", failing)
    assert main(["gpu", "--check-device", "cpu", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "gpu-check: FAILED: parity direct forces (deviation 1.00e-06 > 1e-09 x 1)"
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["ok"] is False and report["ddp"]["ok"] is None
    assert "| direct | forces | 1.00e-06 | 1 | 1e-09 | FAILED |" in (tmp_path / "gpu.md").read_text()


def test_deviation_is_scaled_like_the_property_suite():
    reference = torch.tensor([[2.0, -4.0], [0.5, 1.0]], dtype=torch.float64)
    assert deviation("c", "x", reference + 3e-9, reference, 1e-9).ok  # 3e-9 <= 1e-9 x 4
    far = deviation("c", "x", reference + 5e-9, reference, 1e-9)
    assert not far.ok and far.scale == 4.0 and far.max_abs == pytest.approx(5e-9)
    small = torch.tensor([1e-3])
    assert not deviation("c", "x", small + 2e-9, small, 1e-9).ok  # scale at least 1
    assert not deviation("c", "x", reference[0], reference, 1e-9).ok  # shapes differ


def test_report_names_each_failure():
    report = GpuReport({"fairchem_major": 1})
    report.parity = [Deviation("cfg", "energy", 0.0, 1.0, 1e-9), Deviation("cfg", "stress", 1.0, 2.0, 1e-9)]
    report.amp = [AmpResult("cfg", "fp16", 3.0, float("nan"), [3.0, float("nan")]),
                  AmpResult("cfg", "bf16", 3.0, 3.0, [3.0], skipped_steps=1),
                  AmpResult("cfg", "bf16", 3.0, 1.0, [3.0, 2.0])]
    report.ddp = DdpResult("failed: the step did not end within 300 s")
    assert report.failures() == ["parity cfg stress (deviation 1.00e+00 > 1e-09 x 2)",
                                 "AMP cfg (loss 3 -> nan, 0 steps skipped)", "AMP cfg (loss 3 -> 3, 1 steps skipped)",
                                 "DDP step (failed: the step did not end within 300 s)"]
    text = markdown(report, "## header\n", "md")
    assert text.count("| FAILED |") == 3 and "Result: FAILED: parity cfg stress" in text
    assert "\nfailed: the step did not end within 300 s\n" in text


def test_bad_options_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "gpu"
    assert main(["gpu", "--check-device", "cpu", "--steps", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "leignn-bench: error: --steps must be at least 1, got 0"
    assert main(["gpu", "--check-device", "cpu", "--sizes", "10,x", "--out", str(out)]) == 2
    assert "--sizes" in capsys.readouterr().err and not out.exists()
    assert main(["md", "--check-device", "cpu", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "leignn-bench: error: --check-device is an option of leignn-bench gpu only"
