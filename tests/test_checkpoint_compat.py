"""A checkpoint written before the core/adapter split loads with the same predictions.

``fixtures/demo_checkpoint/`` holds a ``make demo`` checkpoint (small data, one epoch) written by
the code of the time, the demo's test frames, and what that code predicted for them through
``main.py --mode predict`` and through ``LEIGNNCalculator`` (``generate.py``, rerun here).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from ase.io import read

FIXTURE = Path(__file__).parent / "fixtures" / "demo_checkpoint"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _generator():
    spec = importlib.util.spec_from_file_location("demo_checkpoint_fixture", FIXTURE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_same(actual: dict, expected: dict, rtol: float) -> None:
    energy, ref_energy = np.asarray(actual["energy"]).ravel(), np.asarray(expected["energy"]).ravel()
    np.testing.assert_allclose(energy, ref_energy, rtol=rtol, atol=rtol)
    for forces, ref in zip(actual["forces"], expected["forces"], strict=True):
        np.testing.assert_allclose(np.asarray(forces), np.asarray(ref), rtol=rtol, atol=rtol)


def test_main_predict_gives_the_old_predictions(tmp_path):
    """float32 predictions: the same to float32 rounding (the edges are now summed in vesin's order)."""
    actual = _generator().predict_with_main(FIXTURE / "frames.extxyz", tmp_path)
    assert actual["ids"] == EXPECTED["main_predict"]["ids"]
    _assert_same(actual, EXPECTED["main_predict"], 1e-5)


def test_calculator_gives_the_old_predictions():
    frames = read(FIXTURE / "frames.extxyz", index=":")
    _assert_same(_generator().predict_with_calculator(frames), EXPECTED["calculator_float64"], 1e-10)
