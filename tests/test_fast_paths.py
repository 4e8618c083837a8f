"""The cost-saving code paths compute what the plain ones compute.

Covers the subnormal flush of the radial features, the reused per-edge buffers of no-grad
inference (in place, shared by layers and edge chunks) and the gathers that training redoes in the
backward pass instead of storing them (first and second derivatives).
"""

from __future__ import annotations

import pytest
import torch
from conftest import MODEL_CONFIGS, build_model

from leignn_plugin.accel import edge_chunks
from leignn_plugin.accel.bands import RadialBands
from leignn_plugin.accel.buffers import EdgeBuffers
from leignn_plugin.accel.radial import FlushedRadialEmbedding as RadialEmbedding
from leignn_plugin.accel.radial import flush_tiny, flush_tiny_
from leignn_plugin.accel.recomputed_gathers import RecomputedGathers
from leignn_plugin.testing.checks import assert_close
from leignn_plugin.testing.structures import bulk_cell, organic_molecule, slab_with_adsorbate, to_batch

STRUCTURES = [bulk_cell(), slab_with_adsorbate(), organic_molecule()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flush_zeroes_only_values_below_the_threshold(dtype):
    threshold = torch.finfo(dtype).tiny ** 0.5
    values = torch.tensor([0.0, threshold * 0.5, -threshold * 0.5, threshold, -threshold * 2, 1.0], dtype=dtype)
    assert flush_tiny(values).tolist() == [0.0, 0.0, 0.0, threshold, -threshold * 2, 1.0]


@pytest.mark.parametrize("rbf", ["gaussian", "spherical_bessel", "bernstein"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_radial_features_hold_no_subnormals(rbf, dtype):
    """Subnormal inputs slow the radial matmul threefold on CPUs; none may reach it."""
    radial = RadialEmbedding(128, 6.0, rbf=rbf)
    distance = torch.linspace(0.01, 6.5, 5000, dtype=dtype)
    features = radial(distance)  # [E, R + 1]
    nonzero = features[features != 0].abs()
    assert float(nonzero.min()) >= torch.finfo(dtype).tiny ** 0.5
    assert bool((features[distance >= 6.0] == 0).all())  # exactly zero beyond the cutoff
    assert_close(features[:, -1], radial.envelope(distance / 6.0), 0.0, "envelope column")


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("name", [n for n, c in MODEL_CONFIGS.items() if c["direct_forces"]])
def test_in_place_inference_equals_the_recorded_pass(name, chunk):
    """no_grad runs in place in shared buffers (and chunk by chunk); autograd mode allocates."""
    model = build_model(name, torch.float64)
    data = to_batch(STRUCTURES, torch.float64)
    recorded = {k: t.detach() for k, t in model(data).items()}
    with torch.no_grad(), edge_chunks(model, chunk):
        in_place = model(data)
        again = model(data)
    for key, ref in recorded.items():
        assert_close(in_place[key], ref, 1e-12, key)
        assert torch.equal(again[key], in_place[key]), key


def test_edge_buffers_are_reused_and_grown():
    buffers = EdgeBuffers()
    like = torch.zeros(1, dtype=torch.float64)
    first = buffers.get("filter", (4, 6), like)
    smaller = buffers.get("filter", (2, 3), like)
    assert smaller.data_ptr() == first.data_ptr() and smaller.shape == (2, 3)
    larger = buffers.get("filter", (5, 6), like)
    assert larger.shape == (5, 6) and larger.numel() == 30
    assert buffers.get("filter", (5, 6), like.float()).dtype == torch.float32


def test_dense_table_follows_the_graph():
    buffers = EdgeBuffers()
    features, unit = RadialBands.whole(torch.rand(3, 4)), torch.rand(3, 3)
    graph = torch.tensor([[0, 1, 2], [1, 2, 0]])
    table = buffers.dense_table(graph, unit, features, 3)
    assert buffers.dense_table(graph, unit, features, 3) is table
    other = torch.tensor([[0, 1, 2], [1, 1, 1]])
    assert buffers.dense_table(other, unit, features, 3).slots.t().tolist() == [[3, 3, 3], [0, 1, 2], [3, 3, 3]]


def _loss_gradients(model, data) -> list[torch.Tensor]:
    model.train()
    out = model(data)
    loss = out["energy"].square().sum() + out["forces"].square().sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model.eval()
    return [g.detach() for g in grads]


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_recomputed_gathers_give_the_stored_gradients(name, monkeypatch):
    """Training gradients (double backward for conservative forces) with the gathers redone in the
    backward pass equal those with the gathers stored, and the gathers really are not stored."""
    data = to_batch(STRUCTURES, torch.float64)
    packed: list[bool] = []
    pack = RecomputedGathers._pack

    def counting_pack(self, tensor):
        saved = pack(self, tensor)
        packed.append(isinstance(saved, tuple))
        return saved

    monkeypatch.setattr(RecomputedGathers, "_pack", counting_pack)
    recomputed = _loss_gradients(build_model(name, torch.float64), data)
    assert sum(packed) >= 2 * 2  # two gathers per edge piece in each of the two layers
    monkeypatch.setattr(RecomputedGathers, "_pack", lambda self, tensor: tensor)
    stored = _loss_gradients(build_model(name, torch.float64), data)
    for g_re, g_st in zip(recomputed, stored):
        assert_close(g_re, g_st, 1e-12, "parameter gradient")


@pytest.mark.parametrize("rbf", ["gaussian", "spherical_bessel", "bernstein"])
def test_radial_features_in_place_equal_recorded(rbf):
    radial = RadialEmbedding(64, 5.0, rbf=rbf).double()
    distance = torch.linspace(0.01, 5.5, 3001, dtype=torch.float64)
    recorded = radial(distance)
    with torch.no_grad():
        assert torch.equal(radial(distance), recorded)
    block = recorded.clone()
    block[::7] *= 1e-140  # below the float64 threshold in places, across chunk boundaries
    assert torch.equal(flush_tiny_(block.clone(), rows_per_chunk=100), flush_tiny(block))
