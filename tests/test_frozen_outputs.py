"""Frozen outputs: what the model computed before the core/adapter split, to 1e-10 (float64).

``fixtures/frozen/`` holds three structures (a periodic bulk cell, a slab with an adsorbate and a
molecule, searched as one mixed batch), the weights of two small LEIGNNs with the paper's radial
setting (128 Gaussians, cutoff 6 Å, at most 20 neighbours) and their energies, forces and stress,
written by ``fixtures/frozen/generate.py`` on the code before the refactor. Every neighbour search
and both the plain and the accelerated blocks must reproduce them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from leignn_plugin.accel import restore_plain
from leignn_plugin.fairchem1 import LEIGNN
from leignn_plugin.testing.checks import assert_close
from leignn_plugin.testing.structures import to_batch

FROZEN = Path(__file__).parent / "fixtures" / "frozen"
OUTPUTS = json.loads((FROZEN / "outputs.json").read_text())


def structures() -> list[Atoms]:
    return [Atoms(numbers=s["numbers"], positions=np.array(s["positions"]), cell=np.array(s["cell"]), pbc=s["pbc"])
            for s in json.loads((FROZEN / "structures.json").read_text())]


def frozen_model(name: str, graph_method: str, speed_paths: bool) -> LEIGNN:
    model = LEIGNN(**OUTPUTS[name]["options"], graph_method=graph_method, speed_paths=speed_paths).double()
    model.load_state_dict(torch.load(FROZEN / f"{name}.pt", weights_only=True))
    if not speed_paths:
        restore_plain(model)
    return model.eval()


@pytest.mark.parametrize("speed_paths", [False, True], ids=["plain", "accelerated"])
@pytest.mark.parametrize("graph_method", ["vesin", "fairchem"])
@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_outputs_are_the_frozen_ones(name, graph_method, speed_paths):
    model = frozen_model(name, graph_method, speed_paths)
    out = model(to_batch(structures(), torch.float64))
    expected = OUTPUTS[name]
    keys = [k for k in ("energy", "forces", "stress") if k in expected]
    assert sorted(out) == keys
    for key in keys:
        reference = torch.tensor(expected[key], dtype=torch.float64)
        if key == "stress":  # the molecule has no volume: its stress is not a number, compare the cells
            finite = torch.isfinite(reference).flatten(1).all(dim=1)
            assert finite.tolist() == [True, True, False]
            out[key], reference = out[key][finite], reference[finite]
        assert_close(out[key], reference, 1e-10, f"{name} {key}")
