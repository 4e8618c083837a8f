"""Fixtures of the fairchem 2.x suite: the generic suite's model factory, and one demo dataset and
trained demo checkpoints per session (``fairchem -c`` on the embedded demo data)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.fairchem2.harness import potential
from leignn_plugin.testing.bad_inputs import Payload, recorder  # noqa: F401 (the tests import Payload from here)
from leignn_plugin.testing.configs import MODEL_CONFIGS, SMALL

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VENV_1X = REPO / ".venv" / "bin" / "python"


def core_weights(name: str, seed: int = 0) -> tuple[dict, dict]:
    """Options and seeded weights of the core potential for configuration ``name`` (the energy output
    layer, which starts at zero, gets random weights so that the checks see a real function)."""
    options = {**SMALL, **MODEL_CONFIGS[name]}
    torch.manual_seed(seed)
    core = LEIGNNPotential(**options).double()
    torch.nn.init.xavier_uniform_(core.energy_head.mlp[-1].weight)
    return options, core.state_dict()


def build_model(name: str, dtype: torch.dtype = torch.float64, seed: int = 0):
    """A small 2.x LEIGNN HydraModel of configuration ``name`` with flat outputs, in eval mode."""
    options, state = core_weights(name, seed)
    return potential(options, state, dtype)


@pytest.fixture(params=sorted(MODEL_CONFIGS))
def model_name(request) -> str:
    return request.param


@pytest.fixture
def build():
    """The model factory of the generic suite (leignn_plugin.testing.suite)."""
    return build_model


def run(args: list[str], cwd: Path = REPO, timeout: float = 900,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A command of this environment (``leignn-data``, ``leignn-fairchem2``, ``fairchem``), captured (in
    ``env``, else this process's environment)."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def bad_input(tmp_path):
    """``record(kind, command, line, status=2)``: the README's bad-input row for ``kind`` (see
    leignn_plugin.testing.bad_inputs); the rows of both suites share one table."""
    return recorder(tmp_path)


@pytest.fixture
def payload_marker(tmp_path) -> Path:
    """A file a crafted input tries to create; tests assert it never appears."""
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The small demo datasets as ASE-LMDB, built once with ``leignn-data demo --output-format aselmdb``."""
    out = tmp_path_factory.mktemp("demo") / "data_aselmdb"
    done = run(["leignn-data", "demo", str(out), "--size", "small", "--quiet", "--output-format", "aselmdb"])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def data_overrides(data: Path) -> list[str]:
    """The overrides pointing a demo config at the demo S2EF splits under ``data``."""
    return [f"train_src={data}/oc20_s2ef/train", f"val_src={data}/oc20_s2ef/val"]


@dataclass
class DemoRun:
    """A finished ``fairchem -c`` run: its final inference checkpoint and the validation loss of each epoch."""

    checkpoint: Path
    val_losses: list[float]


def train_demo(command: list[str], config: str | Path, data: Path, run_dir: Path, *overrides: str) -> DemoRun:
    """Train ``configs/fairchem2/<config>`` (or the config file ``config``) on the small demo split with
    ``command``: fairchem's own ``fairchem -c`` or ``leignn-fairchem2 train -c`` (which checks the config,
    then hands it over)."""
    path = config if isinstance(config, Path) else Path("configs/fairchem2") / config
    done = run([*command, str(path), *data_overrides(data), f"job.run_dir={run_dir}", *overrides])
    assert done.returncode == 0, done.stderr[-4000:]
    checkpoints = sorted(run_dir.glob("*/checkpoints/final/inference_ckpt.pt"))
    assert len(checkpoints) == 1, (list(run_dir.rglob("*")), done.stderr[-3000:])
    losses = [float(m) for m in re.findall(r"val/loss: ([0-9.eE+-]+)", done.stderr + done.stdout)]
    return DemoRun(checkpoints[0], losses)


FITTED = "demo_fitted"
"""The ``element_refs`` option :func:`fitted_configs` writes."""


@pytest.fixture(scope="session")
def fitted_configs(demo_data, tmp_path_factory) -> Path:
    """A copy of configs/fairchem2 whose ``element_refs/demo_fitted.yaml`` holds the references
    ``leignn-data inspect`` fits to the demo training split, written as the README says."""
    configs = tmp_path_factory.mktemp("configs") / "fairchem2"
    shutil.copytree(REPO / "configs" / "fairchem2", configs)
    done = run(["leignn-data", "inspect", str(demo_data / "oc20_s2ef" / "train"), "--references",
                str(configs / "element_refs" / f"{FITTED}.yaml")])
    assert done.returncode == 0, done.stderr[-3000:]
    return configs


@pytest.fixture(scope="session")
def direct_run(fitted_configs, demo_data, tmp_path_factory) -> DemoRun:
    """The demo config (direct forces) trained for 3 epochs on the small demo split by ``fairchem -c``,
    with element references fitted to that split (the OC20 setting)."""
    return train_demo(["fairchem", "-c"], fitted_configs / "demo.yaml", demo_data,
                      tmp_path_factory.mktemp("runs_direct"), "epochs=3", f"element_refs={FITTED}")


@pytest.fixture(scope="session")
def conservative_run(demo_data, tmp_path_factory) -> DemoRun:
    """The conservative demo config trained for 3 epochs (the model for MD)."""
    return train_demo(["leignn-fairchem2", "train", "-c"], "demo_conservative.yaml", demo_data,
                      tmp_path_factory.mktemp("runs_conservative"), "epochs=3")
