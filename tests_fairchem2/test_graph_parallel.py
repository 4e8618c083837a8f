"""Graph-parallel LEIGNN on fairchem's ``gp_utils``: 2 and 4 gloo ranks give the single-process results.

Every model configuration of the generic suite (direct and conservative forces, stress, both node updates,
with and without the virtual node) on a periodic slab, a bulk cell and a batch of several structures, in
float64, to 1e-10 (relative to the largest value, at least 1): the ranks split the atoms, exchange neighbour
features and the virtual node's sums every layer, and sum or gather the outputs. The session's trained
checkpoints go through fairchem's predict unit on the ranks as fairchem's parallel workers run it.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import build_model, core_weights
from fairchem.core.common import gp_utils

from leignn_plugin.core.parallel import atom_share
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.fairchem2.graph_parallel_run import GraphParallelCase, GraphParallelJob, run_graph_parallel
from leignn_plugin.fairchem2.harness import atoms_batch
from leignn_plugin.testing.checks import assert_close
from leignn_plugin.testing.configs import MODEL_CONFIGS
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate

STRUCTURES = {
    "slab": lambda: [slab_with_adsorbate()],
    "bulk": lambda: [bulk_cell()],
    "batch": lambda: [slab_with_adsorbate(seed=4), bulk_cell(seed=5), organic_molecule(), bulk_cell(seed=6)],
}
MODEL_CASES = [(config, structures) for config in sorted(MODEL_CONFIGS) for structures in STRUCTURES]
CHECKPOINTS = ("direct_run", "conservative_run")
RTOL = 1e-10
CHECKPOINT_RTOL = 1e-5  # float32 inference, summed in another order


@pytest.fixture(scope="module", params=[2, 4], ids=["2-ranks", "4-ranks"])
def ranks(request) -> int:
    return request.param


@pytest.fixture(scope="module")
def parallel_outputs(ranks, request) -> dict:
    """Rank 0's outputs of every case, predicted on ``ranks`` gloo ranks in one spawn."""
    checkpoints = {name: str(request.getfixturevalue(name).checkpoint) for name in CHECKPOINTS}
    cases = [GraphParallelCase(STRUCTURES[structures](), *core_weights(config)) for config, structures in MODEL_CASES]
    cases += [GraphParallelCase(STRUCTURES["batch"](), checkpoint=path, dtype=torch.float32)
              for path in checkpoints.values()]
    results = run_graph_parallel(GraphParallelJob(cases), ranks)
    names = [*MODEL_CASES, *CHECKPOINTS]
    return {"outputs": dict(zip(names, results[0].outputs)), "checkpoints": checkpoints}


@pytest.mark.parametrize(("config", "structures"), MODEL_CASES)
def test_graph_parallel_equals_one_process(parallel_outputs, ranks, config, structures):
    model = build_model(config)
    expected = model(atoms_batch(STRUCTURES[structures](), torch.float64))
    got = parallel_outputs["outputs"][(config, structures)]
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert_close(torch.as_tensor(got[name]), value, RTOL, f"{name} on {ranks} ranks ({config}, {structures})")


@pytest.mark.parametrize("run_name", CHECKPOINTS)
def test_graph_parallel_predict_unit(parallel_outputs, ranks, run_name):
    """fairchem's predict unit of a trained checkpoint, on every rank of the group, as its workers run it."""
    unit = load_predict_unit(parallel_outputs["checkpoints"][run_name])
    expected = unit.predict(atoms_batch(STRUCTURES["batch"](), torch.float32, next(iter(unit.dataset_to_tasks))))
    got = parallel_outputs["outputs"][run_name]
    assert {"energy", "forces"} <= set(got) and set(got) == set(expected)
    for name, value in expected.items():
        assert_close(torch.as_tensor(got[name]), value.detach(), CHECKPOINT_RTOL, f"{name} on {ranks} ranks ({run_name})")


@pytest.mark.parametrize("num_atoms", [4, 31, 100_003])
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_atom_shares_are_fairchems(num_atoms, world_size):
    """The core's shares are the row counts fairchem's gathers assume (``gp_utils.size_list_fn``)."""
    shares = [atom_share(num_atoms, world_size, rank) for rank in range(world_size)]
    assert [stop - start for start, stop in shares] == gp_utils.size_list_fn(num_atoms, world_size)
    assert shares[0][0] == 0 and shares[-1][1] == num_atoms
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
