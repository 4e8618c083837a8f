"""LEIGNNCalculator: same numbers as fairchem's trainer, Verlet-list reuse equal to a fresh graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from fairchem.core.datasets import LmdbDataset, data_list_collater
from test_md_models import TrainedModels, cu_ni_cell, trained_models

from leignn_plugin.core.message import MessageBlock
from leignn_plugin.graph import neighbor_graph
from leignn_plugin.md.calculator import LEIGNNCalculator


@pytest.fixture(scope="session")
def md_models(tmp_path_factory) -> TrainedModels:
    return trained_models(tmp_path_factory.getbasetemp() / "md_models")


def _lmdb_atoms(data) -> Atoms:
    return Atoms(numbers=data.atomic_numbers.long().numpy(), positions=data.pos.double().numpy(),
                 cell=data.cell.view(3, 3).double().numpy(), pbc=True)


def test_matches_main_py_predict(md_models):
    """checkpoint.pt with EMA: the numbers `main.py --mode predict` wrote for the test split."""
    predictions = np.load(md_models.predictions)
    dataset = LmdbDataset({"src": str(md_models.data / "test")})
    calc = LEIGNNCalculator(md_models.conservative)
    start = 0
    for k in range(len(dataset)):
        data = dataset[k]
        assert predictions["ids"][k] == f"{int(data.sid)}_0"
        out = calc.predict(_lmdb_atoms(data))
        natoms = int(data.natoms)
        np.testing.assert_allclose(out["energy"].item(), predictions["energy"][k], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(out["forces"].numpy(), predictions["forces"][start:start + natoms], atol=2e-5)
        start += natoms


@pytest.mark.parametrize("which", ["conservative", "conservative_best", "direct"])
def test_matches_trainer_predict_in_process(md_models, which):
    """fairchem's OCPCalculator trainer (built with inference_only, so without EMA): trainer.predict."""
    from fairchem.core.common.relaxation.ase_utils import OCPCalculator

    path = getattr(md_models, which)
    reference = OCPCalculator(checkpoint_path=str(path), cpu=True, seed=0)
    frames = [LmdbDataset({"src": str(md_models.data / "val")})[k] for k in range(3)]
    expected = reference.trainer.predict(data_list_collater(frames, otf_graph=True), per_image=False,
                                         disable_tqdm=True)
    # best_checkpoint.pt has the EMA weights baked in and no separate EMA, so both agree there
    calc = LEIGNNCalculator(path, use_ema=which == "conservative_best")
    got = [calc.predict(_lmdb_atoms(d)) for d in frames]
    np.testing.assert_allclose(torch.cat([g["energy"].view(-1) for g in got]).numpy(),
                               expected["energy"].view(-1).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(torch.cat([g["forces"] for g in got]).numpy(), expected["forces"].numpy(), atol=2e-5)


def test_properties_are_per_instance(md_models):
    direct = LEIGNNCalculator(md_models.direct)
    conservative = LEIGNNCalculator(md_models.conservative)
    assert "stress" in conservative.implemented_properties
    assert "stress" not in direct.implemented_properties
    assert direct.implemented_properties is not conservative.implemented_properties
    assert LEIGNNCalculator.implemented_properties == []


def test_stress_is_the_strain_derivative_of_the_energy(md_models):
    """Analytic stress (scaled by the energy normalizer) equals ASE's finite-difference stress."""
    atoms = cu_ni_cell(7)
    atoms.calc = LEIGNNCalculator(md_models.conservative, dtype="float64")
    analytic = atoms.get_stress()
    numeric = atoms.calc.calculate_numerical_stress(atoms, d=1e-5)
    assert np.abs(analytic).max() > 1e-4
    np.testing.assert_allclose(analytic, numeric, atol=1e-6 + 1e-4 * np.abs(analytic).max())


def test_forces_are_the_gradient_of_the_energy(md_models):
    atoms = cu_ni_cell(8)
    atoms.calc = LEIGNNCalculator(md_models.conservative, dtype="float64")
    forces = atoms.get_forces()
    numeric = np.zeros((3, 3))
    for row, index in enumerate((0, 9, 30)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                probe = atoms.copy()
                probe.calc = atoms.calc
                probe.positions[index, axis] += sign * 1e-4
                energies.append(probe.get_potential_energy())
            numeric[row, axis] = -(energies[0] - energies[1]) / 2e-4
    np.testing.assert_allclose(forces[[0, 9, 30]], numeric, atol=1e-6 + 1e-4 * np.abs(forces).max())


def test_verlet_list_reuse_equals_fresh_graph(md_models):
    """Hot Langevin MD with a 1 Å skin: each step equals a rebuild-every-step calculator and, at the end,
    the model's own on-the-fly graph; atoms leave the cell on the way."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.numbers[::4] = 28
    reused = LEIGNNCalculator(md_models.conservative, dtype="float64", skin=1.0)
    fresh = LEIGNNCalculator(md_models.conservative, dtype="float64", skin=0.0)
    cell_list = LEIGNNCalculator(md_models.conservative, dtype="float64", skin=0.5, graph_method="cell_list")
    atoms.calc = reused
    MaxwellBoltzmannDistribution(atoms, temperature_K=2500, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 3.0 * units.fs, temperature_K=2500, friction=0.02,
                   rng=np.random.default_rng(1))
    steps = 24
    for step in range(steps):
        dyn.run(1)
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        for other in (fresh, cell_list) if step % 4 == 3 else (fresh,):
            probe = atoms.copy()
            probe.calc = other
            np.testing.assert_allclose(probe.get_potential_energy(), e, rtol=0, atol=1e-9)
            np.testing.assert_allclose(probe.get_forces(), f, rtol=0, atol=1e-9)
    assert 1 < reused.neighbors.num_builds < steps // 2
    assert fresh.neighbors.num_builds == steps
    frac = atoms.get_scaled_positions(wrap=False)
    assert np.any((frac < 0) | (frac >= 1)), "no atom left the cell: the test does not cover wrapping"
    backbone = reused.potential.backbone
    graph = reused.to_graph(atoms)
    searched = neighbor_graph(graph.pos, graph.cell, graph.pbc, torch.tensor([len(atoms)]), backbone.cutoff,
                              backbone.max_neighbors)  # a fresh search, no Verlet list
    otf = reused.potential.model(replace(graph, edge_index=searched.edge_index, cell_offsets=searched.cell_offsets))
    otf_forces = reused.potential.denormalize("forces", otf["forces"].detach(), graph.numbers, graph.batch)
    np.testing.assert_allclose(otf_forces.numpy(), f, atol=1e-9)


def test_molecule_without_cell(md_models):
    """A non-periodic structure: no stress, forces from the same graph code, finite results."""
    atoms = molecule("CH4")
    atoms.numbers[:] = 29
    atoms.positions *= 1.6
    atoms.calc = LEIGNNCalculator(md_models.conservative, dtype="float64")
    assert np.isfinite(atoms.get_potential_energy())
    np.testing.assert_allclose(atoms.get_forces().sum(axis=0), 0.0, atol=1e-9)
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()


def test_elements_outside_the_model_are_refused(md_models):
    atoms = cu_ni_cell(3)
    atoms.numbers[0] = 79
    atoms.calc = LEIGNNCalculator(md_models.conservative)
    with pytest.raises(ValueError, match=r"atomic number 79; only 1\.\.30 are allowed \(the num_elements"):
        atoms.get_potential_energy()


def test_bad_device_and_dtype_are_refused(md_models):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            LEIGNNCalculator(md_models.conservative, device="cuda")
    with pytest.raises(ValueError, match="dtype must be one of"):
        LEIGNNCalculator(md_models.conservative, dtype="float16")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["conservative", "direct"])
def test_compiled_calculator_equals_the_eager_one(md_models, which):
    """inductor-compiled model, two cell sizes (dynamic shapes: no failure on the second)."""
    path = getattr(md_models, which)
    eager, compiled = LEIGNNCalculator(path), LEIGNNCalculator(path, compiled=True)
    assert compiled.model is not compiled.potential.model
    for atoms in (cu_ni_cell(3), cu_ni_cell(4) * (2, 1, 1)):
        expected, got = eager.predict(atoms), compiled.predict(atoms)
        for key, value in expected.items():
            scale = max(1.0, float(value.abs().max()))
            np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("which", ["conservative", "direct"])
def test_edge_chunks_give_the_unchunked_numbers(md_models, which):
    """The default calculator streams edges in chunks once a graph outgrows them; a tiny budget forces
    many chunks here, and the numbers stay those of the whole pass."""
    path = getattr(md_models, which)
    atoms = cu_ni_cell(5)
    whole = LEIGNNCalculator(path, dtype="float64", edge_chunk_mib=None)
    chunked = LEIGNNCalculator(path, dtype="float64", edge_chunk_mib=0.01)
    sizes = {m.edge_chunk_size for m in chunked.model.modules() if hasattr(m, "edge_chunk_size")}
    assert len(sizes) == 1 and 1 <= sizes.pop() < len(chunked.to_graph(atoms).edge_index[0]) // 10
    assert {getattr(m, "edge_chunk_size", None) for m in whole.model.modules() if isinstance(m, MessageBlock)} == {None}
    expected, got = whole.predict(atoms), chunked.predict(atoms)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=0, atol=1e-10 * max(1.0, float(value.abs().max())))
