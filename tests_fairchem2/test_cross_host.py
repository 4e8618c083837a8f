"""Same weights, same structures: the fairchem 2.x model and the fairchem 1.10 model agree to 1e-10 in
float64. The 1.10 side runs in the 1.10 environment (.venv, ``make install``) through
``python -m leignn_plugin.testing.cross_host``."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from ase.io import read, write
from conftest import REPO, VENV_1X, core_weights

from leignn_plugin.testing.configs import MODEL_CONFIGS
from leignn_plugin.testing.cross_host import predictions
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate

pytestmark = pytest.mark.skipif(not VENV_1X.exists(), reason="needs the fairchem 1.10 environment (make install)")


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    """A periodic bulk, a slab with an adsorbate and a molecule, as one extxyz file both hosts read."""
    path = tmp_path_factory.mktemp("cross") / "structures.extxyz"
    write(path, [bulk_cell(), slab_with_adsorbate(), organic_molecule()])
    return path


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_fairchem2_agrees_with_fairchem1(name, structures, tmp_path):
    options, state = core_weights(name, seed=11)
    weights = tmp_path / "weights.pt"
    torch.save({"options": options, "state": state}, weights)
    out = tmp_path / "fairchem1.npz"
    done = subprocess.run([str(VENV_1X), "-m", "leignn_plugin.testing.cross_host", str(weights), str(structures),
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = np.load(out)
    ours = predictions(options, state, read(structures, ":"))
    assert set(ours) == set(reference.files)
    for key in ours:
        assert np.isfinite(reference[key]).all() and np.isfinite(ours[key]).all(), key
        scale = max(1.0, float(np.abs(reference[key]).max()))
        deviation = float(np.abs(ours[key] - reference[key]).max())
        assert deviation <= 1e-10 * scale, f"{key}: 2.x and 1.10 differ by {deviation:.3e}"
    assert np.abs(reference["energy"]).max() > 0  # the comparison saw a real function
