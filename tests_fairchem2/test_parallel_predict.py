"""fairchem 2.x's ParallelMLIPPredictUnit (Ray, two CPU workers) on the trained demo checkpoint: loaded through
the project's checks in this process and in the workers, graph-parallel over the workers, with the results of
one MLIPPredictUnit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import ray
import torch
from fairchem.core import FAIRChemCalculator
from fairchem.core.common import gp_utils
from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.fairchem2.models import LEIGNNBackbone
from leignn_plugin.fairchem2.parallel import load_is_checked, load_parallel_predict_unit
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate

TOLERANCE = 1e-5
"""float32, eV and eV/Å: the workers split the atoms, so sums run in another order than the single unit's."""


@pytest.mark.timeout(600)  # a Ray that never schedules its workers fails here instead of holding the suite
def test_two_ray_workers_predict_what_one_unit_predicts(direct_run):
    """Two Ray workers, in fairchem's graph-parallel group, each compute half the atoms and predict what one
    unit predicts, batched and through FAIRChemCalculator."""
    single = load_predict_unit(direct_run.checkpoint)
    task = next(iter(single.dataset_to_tasks))
    structures = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]
    batch = atomicdata_list_to_batch([AtomicData.from_ase(atoms, task_name=task) for atoms in structures])
    expected = single.predict(batch.clone())
    slab = slab_with_adsorbate(seed=7)
    slab.calc = FAIRChemCalculator(single, task_name=task)
    expected_slab = (slab.get_potential_energy(), slab.get_forces())
    unit = load_parallel_predict_unit(direct_run.checkpoint, workers=2, num_cpus=2)
    try:
        assert ray.get(ray.remote(load_is_checked).options(num_cpus=0).remote()), "a Ray worker loads unchecked"
        predicted = unit.predict(batch.clone())
        assert gp_utils.initialized() and gp_utils.get_gp_world_size() == 2
        backbone = next(m for m in unit.local_rank0.predict_unit.model.modules() if isinstance(m, LEIGNNBackbone))
        shares = []
        hook = backbone.register_forward_hook(lambda module, args, emb: shares.append(emb["node_scalar"].shape[0]))
        slab.calc = FAIRChemCalculator(unit, task_name=task)
        got_slab = (slab.get_potential_energy(), slab.get_forces())
        hook.remove()
    finally:
        unit.close()
    assert not gp_utils.initialized()
    assert shares == [(len(slab) + 1) // 2], shares  # rank 0 computed its half of the atoms
    assert set(predicted) == set(expected) == {"energy", "forces"}
    assert predicted["forces"].shape == (sum(len(a) for a in structures), 3)
    for key, value in expected.items():
        torch.testing.assert_close(predicted[key], value, rtol=0.0, atol=TOLERANCE)
    assert abs(got_slab[0] - expected_slab[0]) < TOLERANCE
    np.testing.assert_allclose(got_slab[1], expected_slab[1], rtol=0.0, atol=TOLERANCE)


def test_a_file_that_is_not_a_leignn_checkpoint_is_refused_before_ray_starts(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"config": {}, "state_dict": {}}, path)
    message = f"{path} is a fairchem 1.x checkpoint; convert it first with leignn-fairchem2 convert {path} OUT.pt"
    with pytest.raises(CheckpointError) as refused:
        load_parallel_predict_unit(path)
    assert str(refused.value) == message
    assert not ray.is_initialized()


def test_a_ray_started_without_the_checked_loader_is_refused(direct_run):
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.ERROR)
    try:
        with pytest.raises(CheckpointError) as refused:
            load_parallel_predict_unit(direct_run.checkpoint)
        assert str(refused.value).startswith("Ray is already running in this process, and its workers would load "
                                             "the checkpoint unchecked")
    finally:
        ray.shutdown()
