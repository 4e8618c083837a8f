"""The generic model suite: invariances, consistency and derivatives of any LEIGNN configuration in any host.

Each host's test module imports these tests (``from leignn_plugin.testing.suite import *``) and its
conftest supplies two fixtures: ``build(name, dtype=float64, seed=0)``, a small model of configuration
``name`` (``leignn_plugin.testing.configs.MODEL_CONFIGS``) whose outputs are flat ``energy`` [B],
``forces`` [N, 3] and ``stress`` [B, 3, 3], and ``model_name``, parametrized over the configurations.
The checks themselves are ``leignn_plugin.testing.checks``; batches come from the installed host.
The speed-path tests run host-free, on the core potential over the core's own graph input, so both
hosts run them the same way.
"""

from __future__ import annotations

import pytest
import torch

from leignn_plugin.accel import accelerate, edge_chunks, restore_plain, use_dense_sums
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.testing import checks
from leignn_plugin.testing.configs import BANDED_CONFIGS, MODEL_CONFIGS, SMALL
from leignn_plugin.testing.structures import bulk_cell, core_graph, organic_molecule, slab_with_adsorbate

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


SPEED_PATHS = ("cpu-paths", "no-cpu-paths", "chunked", "dense")
SPEED_CONFIGS = sorted({**MODEL_CONFIGS, **BANDED_CONFIGS})
SPEED_TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


def core_model(name: str, dtype: torch.dtype) -> LEIGNNPotential:
    """The core potential of configuration ``name`` (no host), plain blocks, eval mode."""
    torch.manual_seed(0)
    model = LEIGNNPotential(**{**SMALL, **{**MODEL_CONFIGS, **BANDED_CONFIGS}[name]}).to(dtype)
    torch.nn.init.xavier_uniform_(model.energy_head.mlp[-1].weight)  # zero at init: give the checks a function
    return model.eval()


def speed_up(model: LEIGNNPotential, path: str) -> LEIGNNPotential:
    accelerate(model, cpu_paths=path != "no-cpu-paths")
    if path == "dense":
        use_dense_sums(model)
    return model


def core_outputs(model, graph, grad: bool) -> dict[str, torch.Tensor]:
    """The outputs; stress only of the periodic structures (the molecule has no volume)."""
    with torch.set_grad_enabled(grad):
        out = {k: t.detach() for k, t in model(graph).items()}
    if "stress" in out:
        out["stress"] = out["stress"][:2]
    return out


@pytest.mark.parametrize("path", SPEED_PATHS)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SPEED_CONFIGS)
def test_speed_paths_equal_the_plain_blocks(name, dtype, grad, path):
    """Every speed path computes what the core's plain blocks compute: float64 to 1e-12, float32 to
    its rounding, with autograd and without."""
    model = core_model(name, dtype)
    graph = core_graph([bulk_cell(), slab_with_adsorbate(), organic_molecule()], dtype, model.backbone.cutoff,
                       model.backbone.max_neighbors)
    reference = core_outputs(restore_plain(model), graph, grad)
    speed_up(model, path)
    with edge_chunks(model, 50 if path == "chunked" else None):
        fast = core_outputs(model, graph, grad)
    assert sorted(fast) == sorted(reference)
    for key, ref in reference.items():
        checks.assert_close(fast[key], ref, SPEED_TOLERANCE[dtype], key)


@pytest.mark.parametrize("path", ["cpu-paths", "chunked"])
@pytest.mark.parametrize("name", SPEED_CONFIGS)
def test_speed_paths_give_the_plain_training_gradients(name, path):
    """Parameter gradients of an energy + force loss (double backward for conservative forces), float64."""
    model = core_model(name, torch.float64).train()
    graph = core_graph([bulk_cell(), slab_with_adsorbate(), organic_molecule()], torch.float64,
                       model.backbone.cutoff, model.backbone.max_neighbors)
    grads = {}
    for fast in (False, True):
        speed_up(model, path) if fast else restore_plain(model)
        with edge_chunks(model, 50 if fast and path == "chunked" else None):
            out = model(graph)
            loss = out["energy"].square().sum() + out["forces"].square().sum()
            grads[fast] = torch.autograd.grad(loss, list(model.parameters()))
    for fast_grad, plain_grad in zip(grads[True], grads[False], strict=True):
        checks.assert_close(fast_grad, plain_grad, 1e-10, "parameter gradient")
