"""Measurement helpers of the benchmark: FLOPs, peak memory, the scaling fit, the cell-list MD system."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from leignn_plugin.bench.md_scaling import copper_supercell
from leignn_plugin.bench.measure import count_flops, count_parameters, measure_call
from leignn_plugin.bench.report import fit_exponent


def test_flops_of_a_linear_layer():
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64)
    assert count_flops(lambda: layer(x)) == 2 * 10 * 64 * 32
    assert count_parameters(layer) == 64 * 32


def test_peak_memory_sees_a_large_allocation():
    def allocate() -> None:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block.add_(1.0)

    timing = measure_call(allocate, torch.device("cpu"))
    assert 48.0 <= timing.peak_mib <= 512.0
    assert timing.wall_s > 0 and timing.cpu_s >= 0


def test_fit_exponent_recovers_a_power_law():
    sizes = [1e3, 1e4, 1e5]
    assert math.isclose(fit_exponent(sizes, [2.0 * n**1.05 for n in sizes]), 1.05, rel_tol=1e-9)
    with pytest.raises(ValueError, match="two different sizes"):
        fit_exponent([10.0, 10.0], [1.0, 2.0])


@pytest.mark.parametrize("target, expected", [(1000, 864), (10_000, 10_976), (100_000, 97_556)])
def test_copper_supercell_sizes(target, expected):
    rep = round((target / 4) ** (1 / 3))
    assert 4 * rep**3 == expected
    if target <= 1000:
        atoms = copper_supercell(target)
        assert len(atoms) == expected and all(atoms.pbc)
