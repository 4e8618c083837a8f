"""The neighbour search (vesin, with fairchem's neighbour cap) finds exactly fairchem's radius graph."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from fairchem.core.common.utils import get_max_neighbors_mask, radius_graph_pbc

from leignn_plugin.fairchem1 import LEIGNN
from leignn_plugin.graph import VerletList, max_neighbors_mask, neighbor_graph
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


def with_pbc(atoms: Atoms, pbc) -> Atoms:
    atoms = atoms.copy()
    atoms.pbc = pbc
    return atoms


def small_cell() -> Atoms:
    """A one-atom fcc cell, 2.1 Å between faces: at 5-6 Å an atom sees dozens of its own images."""
    atoms = bulk("Cu", "fcc", a=3.61)
    atoms.positions += 0.1
    return atoms


def wire() -> Atoms:
    atoms = fcc111("Pt", size=(3, 1, 1), vacuum=5.0)
    atoms.rattle(0.05, seed=2)
    return with_pbc(atoms, (True, False, False))


CASES = {
    "triclinic-8-atoms-cutoff-6": ([bulk_cell()], 6.0, 50),
    "two-cells-few-neighbours": ([bulk_cell(), bulk_cell(3)], 4.0, 10),
    "skewed-unwrapped": ([skewed_cell()], 5.0, 30),
    "slab": ([slab_with_adsorbate()], 6.0, 20),
    "slab-not-periodic-in-z": ([with_pbc(slab_with_adsorbate(), (True, True, False))], 5.0, 50),
    "wire": ([wire()], 6.0, 40),
    "molecule": ([organic_molecule()], 6.0, 20),
    "cell-smaller-than-cutoff": ([small_cell()], 6.0, 30),
    "cu-256-cutoff-5": ([copper(4)], 5.0, 50),
    "cu-256-cut-at-12-neighbours": ([copper(4)], 5.0, 12),
    "mixed-periodicity": ([organic_molecule(), slab_with_adsorbate(), with_pbc(bulk_cell(), (True, True, False)),
                           small_cell()], 5.0, 16),
}


def edge_set(edge_index: torch.Tensor, offsets: torch.Tensor) -> set[tuple]:
    return {(int(j), int(i), *(round(float(o)) for o in off))
            for j, i, off in zip(edge_index[0], edge_index[1], offsets)}


def fairchem_edges(structures: list[Atoms], cutoff: float, max_neighbors: int, strict: bool) -> set[tuple]:
    """fairchem's radius_graph_pbc, itself capping neighbours, one structure at a time (it takes one
    periodicity per call)."""
    edges, first = set(), 0
    for atoms in structures:
        batch = to_batch([atoms])
        search = SimpleNamespace(pos=batch.pos.float(), cell=batch.cell.view(-1, 3, 3).float(), natoms=batch.natoms)
        edge_index, offsets, _ = radius_graph_pbc(search, cutoff, max_neighbors, strict,
                                                  pbc=[bool(p) for p in atoms.pbc])
        edges |= edge_set(edge_index + first, offsets)
        first += len(atoms)
    return edges


def our_graph(structures, cutoff, max_neighbors, strict, method="vesin"):
    batch = to_batch(structures)
    return neighbor_graph(batch.pos, batch.cell, batch.pbc, batch.natoms, cutoff, max_neighbors, strict, method)


@pytest.mark.parametrize("method", ["vesin", "fairchem"])
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_edges_as_fairchem(case, strict, method):
    structures, cutoff, max_neighbors = CASES[case]
    reference = fairchem_edges(structures, cutoff, max_neighbors, strict)
    graph = our_graph(structures, cutoff, max_neighbors, strict, method)
    assert len(reference) > 0
    assert graph.cell_offsets.dtype == torch.long
    assert graph.num_edges == len(edge_set(graph.edge_index, graph.cell_offsets))  # no edge twice
    if strict:  # exact ties (the perfect small cell) are cut arbitrarily: compare distances per atom
        assert shells(structures, edge_set(graph.edge_index, graph.cell_offsets)) == shells(structures, reference)
    else:
        assert edge_set(graph.edge_index, graph.cell_offsets) == reference


def shells(structures: list[Atoms], edges: set[tuple]) -> list[tuple[int, float]]:
    """(target atom, neighbour distance rounded to 1e-6 Å) of every edge, sorted."""
    batch = to_batch(structures, torch.float64)
    cells = batch.cell.view(-1, 3, 3)[batch.batch]
    out = []
    for j, i, *offset in edges:
        image = batch.pos[j] + torch.tensor(offset, dtype=torch.float64) @ cells[i]
        out.append((i, round(float(torch.linalg.vector_norm(image - batch.pos[i])), 6)))
    return sorted(out)


def test_uncapped_edges_are_every_pair_within_the_cutoff():
    """Against ASE's neighbour list (an implementation of its own), with no cap."""
    from ase.neighborlist import primitive_neighbor_list

    for atoms in (skewed_cell(), small_cell(), wire(), organic_molecule()):
        graph = our_graph([atoms], 5.0, 0, False)
        i, j, shifts = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell.complete(), atoms.positions, 5.0)
        assert edge_set(graph.edge_index, graph.cell_offsets) == {
            (int(b), int(a), *map(int, s)) for a, b, s in zip(i, j, shifts)}


def test_edge_vectors_follow_the_convention():
    atoms = skewed_cell()
    graph = our_graph([atoms], 5.0, 100, False)
    j, i = graph.edge_index
    pos = torch.as_tensor(atoms.positions)
    vec = pos[j] + graph.cell_offsets.double() @ torch.as_tensor(atoms.cell.array) - pos[i]  # [E, 3]
    dist = torch.linalg.vector_norm(vec, dim=-1)
    assert float(dist.max()) <= 5.0 + 1e-9 and float(dist.min()) > 1e-2


@pytest.mark.parametrize("strict", [False, True])
def test_neighbour_cap_is_fairchems(strict):
    """Random shells with many exact ties and near-ties within the 0.01 Å^2 tolerance."""
    generator = torch.Generator().manual_seed(3)
    natoms = torch.tensor([7, 5, 9])
    counts = torch.randint(0, 30, (int(natoms.sum()),), generator=generator)
    target = torch.repeat_interleave(torch.arange(counts.numel()), counts)  # sorted, as fairchem assumes
    dist_sq = torch.round(torch.rand(target.numel(), generator=generator) * 40) / 4 + 1.0
    dist_sq[::5] += 0.004  # near-ties
    for cap in (0, 1, 8, 12, 40):
        expected, _ = get_max_neighbors_mask(natoms, target, dist_sq, cap, enforce_max_strictly=strict)
        expected = expected.expand_as(target)
        ours = max_neighbors_mask(target, dist_sq, int(natoms.sum()), cap, strict)
        if strict:  # ties are cut arbitrarily: the same number per atom
            assert torch.equal(torch.bincount(target[ours], minlength=counts.numel()),
                               torch.bincount(target[expected], minlength=counts.numel()))
        else:
            assert torch.equal(ours, expected), cap
        shuffle = torch.randperm(target.numel(), generator=generator)
        shuffled = max_neighbors_mask(target[shuffle], dist_sq[shuffle], int(natoms.sum()), cap, strict)
        assert int(shuffled.sum()) == int(ours.sum())


def test_search_repeats_its_edge_order():
    """The same structures give the same edges in the same order, so float sums repeat exactly."""
    structures = [copper(3), slab_with_adsorbate()]
    first, second = our_graph(structures, 5.0, 20, False), our_graph(structures, 5.0, 20, False)
    assert torch.equal(first.edge_index, second.edge_index)
    assert torch.equal(first.cell_offsets, second.cell_offsets)


def test_verlet_list_equals_a_fresh_search():
    atoms = copper(3)
    rng = np.random.default_rng(0)
    cell = torch.as_tensor(atoms.cell.array)
    numbers = torch.as_tensor(atoms.numbers)
    verlet = VerletList(5.0, skin=1.0, max_neighbors=20)
    pos = torch.as_tensor(atoms.positions)
    for _ in range(6):
        pos = pos + torch.as_tensor(rng.normal(scale=0.08, size=pos.shape))
        kept = verlet.edges(pos, cell, [True] * 3, numbers)
        fresh = neighbor_graph(pos, cell.unsqueeze(0), torch.ones(1, 3, dtype=torch.bool),
                               torch.tensor([len(atoms)]), 5.0, 20)
        assert edge_set(kept.edge_index, kept.cell_offsets) == edge_set(fresh.edge_index, fresh.cell_offsets)
    assert 1 <= verlet.num_builds < 6


def test_unknown_method_is_one_line():
    with pytest.raises(ValueError, match="graph_method must be one of vesin, fairchem, cell_list, got 'kd_tree'"):
        LEIGNN(hidden_channels=16, num_layers=1, num_rbf=8, graph_method="kd_tree")


def test_model_outputs_agree_across_methods():
    """The old configs' ``fairchem`` and ``cell_list`` and the default ``vesin`` give one model."""
    batch = to_batch([bulk_cell(), slab_with_adsorbate(), organic_molecule()], torch.float64)
    outputs = {}
    for method in ("fairchem", "cell_list", "vesin"):
        torch.manual_seed(0)
        model = LEIGNN(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=12,
                       graph_method=method).double().eval()
        outputs[method] = model(batch)
    for method in ("cell_list", "vesin"):
        for key, ref in outputs["fairchem"].items():
            torch.testing.assert_close(outputs[method][key], ref, rtol=1e-12, atol=1e-12)
