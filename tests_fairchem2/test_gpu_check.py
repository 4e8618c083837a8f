"""``leignn-bench gpu`` / ``make gpu-check`` under fairchem 2.x: the one line where there is nothing to check,
and the host-specific parts of the check on the CPU (the 2.x HydraModel against itself in float64, fairchem
2.x's bf16 autocast recipe, a gloo DDP step); tests/test_gpu_check.py runs the whole command on the CPU."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run

from leignn_plugin.bench.amp_training import run_amp
from leignn_plugin.bench.ddp_step import run_ddp
from leignn_plugin.bench.device_parity import run_parity
from leignn_plugin.bench.gpu_check import no_gpu_line
from leignn_plugin.testing.commands import as_typed_by_a_person

no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@no_gpu_here
def test_without_a_gpu_the_command_prints_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    done = run(["leignn-bench", "gpu", "--out", str(out)], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = no_gpu_line()
    assert line is not None and line.startswith("gpu-check: ") and line.endswith(
        ("nothing to check", "to check this host)"))
    assert done.stdout == line + "\n" and done.stderr == ""
    assert not out.exists()


@no_gpu_here
def test_make_gpu_check_without_a_gpu_prints_one_line(tmp_path):
    done = subprocess.run(["make", "gpu-check", f"VENV={tmp_path / 'none'}", f"VENV2={sys.prefix}"], cwd=REPO,
                          env=as_typed_by_a_person(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == no_gpu_line() + "\n" and done.stderr == ""


def test_the_2x_parts_of_the_check_run_on_the_cpu():
    parity = run_parity(torch.device("cpu"))
    assert {d.quantity.split(" (")[0] for d in parity} == {"energy", "forces", "stress", "parameter gradients"}
    assert all(d.ok and d.max_abs == 0.0 for d in parity)
    for result in run_amp(torch.device("cpu"), steps=10):  # bf16 needs no GradScaler warm-up
        assert result.recipe.startswith("fairchem 2.x bf16") and result.skipped_steps == 0
        assert result.ok and all(map(math.isfinite, result.step_losses)), result
    ddp = run_ddp("cpu")
    assert ddp.status == "ok" and ddp.gradient_deviation <= 1e-5 * ddp.gradient_scale, ddp


def test_the_default_report_folder_is_the_hosts():
    from leignn_plugin.bench.cli import _gpu_out

    assert _gpu_out() == Path("benchmarks/results/gpu/fairchem2")
