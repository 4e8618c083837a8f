"""The compiled inference path gives the eager model's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leignn_plugin.accel import compile_for_inference, use_dense_sums
from leignn_plugin.accel.dense_sums import neighbor_slots
from leignn_plugin.fairchem1 import LEIGNN
from leignn_plugin.testing.structures import bulk_cell, slab_with_adsorbate, to_batch


def small_model(direct: bool = True) -> LEIGNN:
    torch.manual_seed(0)
    model = LEIGNN(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=20,
                   direct_forces=direct)
    nn.init.normal_(model.energy_head.mlp[-1].weight)  # a non-zero energy to compare
    return model.eval()


def assert_same(out: dict, ref: dict, rtol: float) -> None:
    for key, value in ref.items():
        scale = max(1.0, float(value.abs().max()))
        assert float((out[key] - value).abs().max()) <= rtol * scale, key


def test_neighbor_slots_table():
    target = torch.tensor([2, 0, 2, 1, 2, 0])
    slots = neighbor_slots(target, 4)
    assert slots.t().tolist() == [[1, 5, 6], [3, 6, 6], [0, 2, 4], [6, 6, 6]]  # [K, N]


@pytest.mark.parametrize("direct", [True, False])
def test_dense_neighbour_sums_match_scatter_sums(direct):
    model = small_model(direct).double()
    data = to_batch([bulk_cell(), slab_with_adsorbate()], torch.float64)
    ref = model(data)
    use_dense_sums(model)
    assert_same(model(data), ref, 1e-12)
    with torch.no_grad():  # the buffered filter
        assert_same(model(data), ref, 1e-12)


def test_traced_graphs_reproduce_eager_outputs():
    """Capture through dynamo without code generation: quick, and catches tracing changes."""
    model = small_model()
    compiled = compile_for_inference(model, backend="eager")
    for structures in ([bulk_cell()], [bulk_cell(), slab_with_adsorbate()]):  # new sizes: no failure
        data = to_batch(structures)
        with torch.no_grad():
            assert_same(compiled(data), model(data), 1e-6)


def test_compile_leaves_the_original_alone():
    model = small_model()
    compiled = compile_for_inference(model, backend="eager")
    assert compiled is not model
    assert all(getattr(layer, "_compiled_call_impl", None) is None for layer in model.backbone.layers)
    with pytest.raises(TypeError, match="takes an LEIGNN"):
        compile_for_inference(nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("direct", [True, False])
def test_inductor_matches_eager_to_1e_5(direct):
    model = small_model(direct)
    compiled = compile_for_inference(model)
    for structures in ([bulk_cell()], [bulk_cell(), slab_with_adsorbate()]):
        data = to_batch(structures)
        with torch.no_grad():
            assert_same(compiled(data), model(data), 1e-5)
