"""The generic model suite: invariances, consistency and derivatives of any LEIGNN configuration in any host.

Each host's test module imports these tests (``from leignn_plugin.testing.suite import *``) and its
conftest supplies two fixtures: ``build(name, dtype=float64, seed=0)``, a small model of configuration
``name`` (``leignn_plugin.testing.configs.MODEL_CONFIGS``) whose outputs are flat ``energy`` [B],
``forces`` [N, 3] and ``stress`` [B, 3, 3], and ``model_name``, parametrized over the configurations.
The checks themselves are ``leignn_plugin.testing.checks``; batches come from the installed host.
"""

from __future__ import annotations

import pytest
import torch

from leignn_plugin.testing import checks
from leignn_plugin.testing.configs import MODEL_CONFIGS
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


def test_rotation(build, model_name, structure, precision):
    dtype, rtol = precision
    checks.check_rotation(build(model_name, dtype), structure, dtype, rtol)


def test_translation(build, model_name, structure, precision):
    dtype, rtol = precision
    checks.check_translation(build(model_name, dtype), structure, dtype, rtol)


def test_permutation(build, model_name, structure, precision):
    dtype, rtol = precision
    checks.check_permutation(build(model_name, dtype), structure, dtype, rtol)


@pytest.mark.parametrize("periodic", [bulk_cell, slab_with_adsorbate])
def test_periodic_image_wrapping(build, model_name, periodic, precision):
    dtype, rtol = precision
    checks.check_image_wrapping(build(model_name, dtype), periodic(), dtype, rtol)


def test_batch_consistency(build, model_name, precision):
    dtype, rtol = precision
    structures = [bulk_cell(), slab_with_adsorbate(), organic_molecule(), bulk_cell(seed=5)]
    checks.check_batch_consistency(build(model_name, dtype), structures, dtype, rtol)


def test_batch_consistency_molecules(build, model_name):
    structures = [organic_molecule(), organic_molecule(seed=7)]
    checks.check_batch_consistency(build(model_name), structures, torch.float64, 1e-9)


def test_no_gradient_between_structures(build, model_name):
    checks.check_no_cross_talk(build(model_name), [bulk_cell(), bulk_cell(seed=3)], torch.float64)


def test_supercell_extensivity(build, model_name, precision):
    dtype, rtol = precision
    checks.check_supercell(build(model_name, dtype), bulk_cell(), dtype, rtol)


def test_smooth_cutoff(build, model_name):
    model = build(model_name)
    checks.check_smooth_cutoff(model, model.backbone.cutoff, torch.float64, 1e-9)


@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if not c["direct_forces"]])
@pytest.mark.parametrize("make", [bulk_cell, organic_molecule])
def test_conservative_forces_match_finite_differences(build, name, make):
    checks.check_forces_are_energy_gradient(build(name), make(), rtol=1e-8)


@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if c.get("regress_stress")])
def test_stress_matches_strain_derivative(build, name):
    checks.check_stress_is_strain_derivative(build(name), bulk_cell(), rtol=1e-8)


@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if c.get("regress_stress")])
def test_stress_of_a_molecule_batched_with_a_crystal_is_zero(build, name):
    model = build(name)
    together = checks.predict(model, [bulk_cell(), organic_molecule()], torch.float64)
    alone = checks.predict(model, [bulk_cell()], torch.float64)
    checks.assert_close(together["stress"][0], alone["stress"][0], 1e-9, "stress of the crystal in the batch")
    assert not together["stress"][1].any(), "a molecule has no stress"


def test_every_parameter_gets_a_gradient(build, model_name):
    model = build(model_name, torch.float32)
    checks.check_all_parameters_used(model, [bulk_cell(), slab_with_adsorbate()], torch.float32)


def test_determinism_under_seed(build, model_name):
    structures = [bulk_cell(), organic_molecule()]
    first = checks.predict(build(model_name, seed=3), structures[:1], torch.float64)
    second = checks.predict(build(model_name, seed=3), structures[:1], torch.float64)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other = checks.predict(build(model_name, seed=4), structures[:1], torch.float64)
    assert not torch.equal(first["energy"], other["energy"])
