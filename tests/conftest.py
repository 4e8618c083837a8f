"""Shared fixtures: the model configurations every generic model check runs through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from leignn_plugin.testing.bad_inputs import Payload, recorder  # noqa: F401 (the tests import Payload from here)
from leignn_plugin.testing.commands import error_line  # noqa: F401 (the tests import it from here)
from leignn_plugin.testing.configs import BANDED_CONFIGS, MODEL_CONFIGS
from leignn_plugin.testing.configs import SMALL as CORE_SMALL

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# 128 Gaussians are banded (accel/bands.py), so their filters run window by window. Their
# narrow peaks make a random small model too sharp for the suite's float32 and finite-difference
# tolerances (with and without bands alike): tests/test_radial_bands.py checks these in float64.
SMALL = dict(**CORE_SMALL, use_pbc=True, otf_graph=True)


def build_model(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, **extra):
    """A small LEIGNN for configuration ``name``, in eval mode and ``dtype``."""
    from leignn_plugin.fairchem1 import LEIGNN

    torch.manual_seed(seed)
    model = LEIGNN(**{**SMALL, **{**MODEL_CONFIGS, **BANDED_CONFIGS}[name], **extra}).to(dtype)
    # the energy output layer starts at zero; give it random weights so the checks see a real function
    torch.nn.init.xavier_uniform_(model.energy_head.mlp[-1].weight)
    return model.eval()


def use_speed_paths(model, on: bool):
    """The model with the CPU speed paths (``on``) or the core's plain blocks, whatever the device."""
    from leignn_plugin.accel import accelerate, restore_plain
    from leignn_plugin.fairchem1 import LEIGNNBackbone

    for module in model.modules():
        if isinstance(module, LEIGNNBackbone):
            module.speed_paths = on
    return accelerate(model, cpu_paths=True) if on else restore_plain(model)


@pytest.fixture(params=sorted(MODEL_CONFIGS))
def model_name(request) -> str:
    return request.param


@pytest.fixture
def build():
    """The model factory of the generic suite (leignn_plugin.testing.suite)."""
    return build_model


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """The small embedded demo dataset, built once per test session with ``leignn-data demo``."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "data"
    subprocess.run([sys.executable, "-m", "leignn_plugin.data", "demo", str(out), "--size", "small", "--quiet"],
                   check=True, capture_output=True)
    return out


@pytest.fixture
def bad_input(tmp_path):
    """``record(kind, command, line, status=2)``: the README's bad-input row for ``kind`` (see
    leignn_plugin.testing.bad_inputs)."""
    return recorder(tmp_path)


@pytest.fixture
def payload_marker(tmp_path) -> Path:
    """A file a crafted input tries to create; tests assert it never appears."""
    return tmp_path / "PAYLOAD_RAN"
