"""Shared fixtures: the model configurations every generic model check runs through."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Small but complete configurations covering every option of the model.
MODEL_CONFIGS: dict[str, dict] = {
    "direct-gaussian-polynomial": dict(direct_forces=True, rbf="gaussian", envelope="polynomial"),
    "conservative-stress-bessel-exponential": dict(
        direct_forces=False, regress_stress=True, rbf="spherical_bessel", envelope="exponential"
    ),
    "conservative-bernstein": dict(direct_forces=False, rbf="bernstein", envelope="polynomial"),
    # the paper's ablations: Vanilla (PaiNN's update, no virtual node) and Vanilla + NMU
    "vanilla-conservative-stress": dict(direct_forces=False, regress_stress=True, virtual_node=False,
                                        node_update="painn"),
    "vanilla-nmu-direct": dict(direct_forces=True, virtual_node=False, node_update="nmu"),
}
# 128 Gaussians are banded (accel/bands.py), so their filters run window by window. Their
# narrow peaks make a random small model too sharp for the suite's float32 and finite-difference
# tolerances (with and without bands alike): tests/test_radial_bands.py checks these in float64.
BANDED_CONFIGS: dict[str, dict] = {
    "direct-gaussian-banded": dict(direct_forces=True, rbf="gaussian", num_rbf=128),
    "conservative-gaussian-banded": dict(direct_forces=False, rbf="gaussian", num_rbf=128),
}

SMALL = dict(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=200,
             num_elements=100, regress_forces=True, use_pbc=True, otf_graph=True)


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


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """The small embedded demo dataset, built once per test session with ``leignn-data demo``."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "data"
    subprocess.run([sys.executable, "-m", "leignn_plugin.data", "demo", str(out), "--size", "small", "--quiet"],
                   check=True, capture_output=True)
    return out
