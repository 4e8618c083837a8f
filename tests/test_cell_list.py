"""The cell-list neighbour search returns exactly fairchem's radius graph."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from fairchem.core.common.utils import radius_graph_pbc

from leignn_plugin.models import LEIGNN
from leignn_plugin.models.graph.cell_list import cell_list_graph
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate, to_batch


def skewed_cell(seed: int = 4) -> Atoms:
    """A strongly triclinic periodic cell with atoms outside the unit cell."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.1, 0.0, 0.0], [2.9, 4.4, 0.0], [1.7, -1.3, 4.8]])
    frac = rng.uniform(-0.3, 1.3, size=(11, 3))
    return Atoms(numbers=rng.choice([13, 29, 8], 11), positions=frac @ cell, cell=cell, pbc=True)


def copper(rep: int) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep, rep, rep))
    atoms.rattle(0.05, seed=1)
    return atoms


CASES = {
    "triclinic-8-atoms-cutoff-6": ([bulk_cell()], 6.0, 50, [True] * 3),
    "two-cells-few-neighbours": ([bulk_cell(), bulk_cell(3)], 4.0, 10, [True] * 3),
    "skewed-unwrapped": ([skewed_cell()], 5.0, 30, [True] * 3),
    "slab": ([slab_with_adsorbate()], 6.0, 20, [True] * 3),
    "slab-not-periodic-in-z": ([slab_with_adsorbate()], 5.0, 50, [True, True, False]),
    "molecule": ([organic_molecule()], 6.0, 20, [False] * 3),
    "cu-256-cutoff-5": ([copper(4)], 5.0, 50, [True] * 3),
    "cu-256-cut-at-12-neighbours": ([copper(4)], 5.0, 12, [True] * 3),
}


def fairchem_graph(batch, cutoff, max_neighbors, pbc, strict):
    search = SimpleNamespace(pos=batch.pos.float(), cell=batch.cell.view(-1, 3, 3).float(), natoms=batch.natoms)
    return radius_graph_pbc(search, cutoff, max_neighbors, strict, pbc=list(pbc))


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_graph_as_fairchem(case, strict):
    structures, cutoff, max_neighbors, pbc = CASES[case]
    batch = to_batch(structures)
    ref_edges, ref_offsets, ref_counts = fairchem_graph(batch, cutoff, max_neighbors, pbc, strict)
    edges, offsets, counts = cell_list_graph(batch.pos, batch.cell, batch.natoms, cutoff, max_neighbors, pbc,
                                             strict)
    assert ref_edges.shape[1] > 0
    assert torch.equal(edges, ref_edges)
    assert torch.equal(offsets, ref_offsets)
    assert torch.equal(counts, ref_counts)


def test_edge_vectors_follow_fairchem_convention():
    batch = to_batch([skewed_cell()])
    edges, offsets, _ = cell_list_graph(batch.pos, batch.cell, batch.natoms, 5.0, 100, [True] * 3)
    j, i = edges
    vec = batch.pos[j] - batch.pos[i] + offsets @ batch.cell[0]  # [E, 3]
    dist = torch.linalg.vector_norm(vec, dim=-1)
    assert float(dist.max()) <= 5.0 + 1e-5
    assert float(dist.min()) > 1e-2


def test_small_chunks_give_the_same_graph():
    batch = to_batch([copper(4)])
    whole = cell_list_graph(batch.pos, batch.cell, batch.natoms, 5.0, 50, [True] * 3)
    chunked = cell_list_graph(batch.pos, batch.cell, batch.natoms, 5.0, 50, [True] * 3, max_pairs=1000)
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)


def test_singular_periodic_cell_is_an_error():
    batch = to_batch([bulk_cell()])
    with pytest.raises(ValueError, match="singular cell"):
        cell_list_graph(batch.pos, torch.zeros(1, 3, 3), batch.natoms, 4.0, 20, [True] * 3)


def test_model_outputs_identical_with_cell_list():
    structures = [bulk_cell(), slab_with_adsorbate(), bulk_cell(seed=5)]
    batch = to_batch(structures, torch.float64)
    outputs = {}
    for method in ("fairchem", "cell_list"):
        torch.manual_seed(0)
        model = LEIGNN(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=12,
                       graph_method=method).double().eval()
        outputs[method] = model(batch)
    for key in outputs["fairchem"]:
        assert torch.equal(outputs["fairchem"][key], outputs["cell_list"][key]), key


def test_unknown_graph_method_is_rejected():
    with pytest.raises(ValueError, match="unknown graph_method 'kd_tree'"):
        LEIGNN(hidden_channels=16, num_layers=1, num_rbf=8, graph_method="kd_tree")
