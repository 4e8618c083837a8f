"""The generic model suite (leignn_plugin.testing.checks) over every model configuration."""

from __future__ import annotations

import pytest
import torch
from conftest import MODEL_CONFIGS, build_model

from leignn_plugin.testing import checks
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate

STRUCTURES = {"bulk": bulk_cell, "slab": slab_with_adsorbate, "molecule": organic_molecule}
# float32 where the math is exact up to rounding; float64 to 1e-9.
PRECISIONS = {"float32": (torch.float32, 1e-5), "float64": (torch.float64, 1e-9)}


@pytest.fixture(params=sorted(STRUCTURES))
def structure(request):
    return STRUCTURES[request.param]()


@pytest.fixture(params=sorted(PRECISIONS))
def precision(request):
    return PRECISIONS[request.param]


def test_rotation(model_name, structure, precision):
    dtype, rtol = precision
    checks.check_rotation(build_model(model_name, dtype), structure, dtype, rtol)


def test_translation(model_name, structure, precision):
    dtype, rtol = precision
    checks.check_translation(build_model(model_name, dtype), structure, dtype, rtol)


def test_permutation(model_name, structure, precision):
    dtype, rtol = precision
    checks.check_permutation(build_model(model_name, dtype), structure, dtype, rtol)


@pytest.mark.parametrize("periodic", [bulk_cell, slab_with_adsorbate])
def test_periodic_image_wrapping(model_name, periodic, precision):
    dtype, rtol = precision
    checks.check_image_wrapping(build_model(model_name, dtype), periodic(), dtype, rtol)


def test_batch_consistency(model_name, precision):
    dtype, rtol = precision
    structures = [bulk_cell(), slab_with_adsorbate(), organic_molecule(), bulk_cell(seed=5)]
    checks.check_batch_consistency(build_model(model_name, dtype), structures, dtype, rtol)


def test_batch_consistency_molecules(model_name):
    structures = [organic_molecule(), organic_molecule(seed=7)]
    checks.check_batch_consistency(build_model(model_name), structures, torch.float64, 1e-9)


def test_no_gradient_between_structures(model_name):
    checks.check_no_cross_talk(build_model(model_name), [bulk_cell(), bulk_cell(seed=3)], torch.float64)


def test_supercell_extensivity(model_name, precision):
    dtype, rtol = precision
    checks.check_supercell(build_model(model_name, dtype), bulk_cell(), dtype, rtol)


def test_smooth_cutoff(model_name):
    model = build_model(model_name)
    checks.check_smooth_cutoff(model, model.backbone.cutoff, torch.float64, 1e-9)


@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if not c["direct_forces"]])
@pytest.mark.parametrize("make", [bulk_cell, organic_molecule])
def test_conservative_forces_match_finite_differences(name, make):
    checks.check_forces_are_energy_gradient(build_model(name), make(), rtol=1e-8)


@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if c.get("regress_stress")])
def test_stress_matches_strain_derivative(name):
    checks.check_stress_is_strain_derivative(build_model(name), bulk_cell(), rtol=1e-8)


def test_every_parameter_gets_a_gradient(model_name):
    model = build_model(model_name, torch.float32)
    checks.check_all_parameters_used(model, [bulk_cell(), slab_with_adsorbate()], torch.float32)


def test_determinism_under_seed(model_name):
    structures = [bulk_cell(), organic_molecule()]
    first = checks.predict(build_model(model_name, seed=3), structures[:1], torch.float64)
    second = checks.predict(build_model(model_name, seed=3), structures[:1], torch.float64)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other = checks.predict(build_model(model_name, seed=4), structures[:1], torch.float64)
    assert not torch.equal(first["energy"], other["energy"])
