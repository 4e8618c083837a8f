"""Edge-chunked evaluation is the unchunked model, including the virtual node's global means."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leignn_plugin.accel import chunk_size_for, edge_chunks, set_edge_chunk_size
from leignn_plugin.core.message import MessageBlock
from leignn_plugin.fairchem1 import LEIGNN
from leignn_plugin.testing.structures import bulk_cell, slab_with_adsorbate, to_batch


def small_model(direct: bool, dtype: torch.dtype) -> LEIGNN:
    torch.manual_seed(0)
    model = LEIGNN(hidden_channels=16, num_layers=3, num_rbf=8, cutoff=4.0, max_neighbors=30,
                   direct_forces=direct, graph_method="cell_list")
    nn.init.normal_(model.energy_head.mlp[-1].weight)  # a non-zero energy to compare
    return model.to(dtype).eval()


@pytest.fixture
def batch():
    # several structures, so that each layer's per-structure means are exercised
    return [bulk_cell(), slab_with_adsorbate(), bulk_cell(seed=5)]


# float64 shows the algorithm is exact; in float32 a one-row matmul rounds differently from the
# full one, and the energy (a sum over 100+ atoms of a random head) carries that to about 1e-6.
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 5e-6)])
@pytest.mark.parametrize("chunk", [1, 13])
def test_chunked_direct_forces_match(batch, chunk, dtype, tol):
    """Same sums in the same order; only the matmul kernel chosen for a chunk may round differently."""
    model = small_model(direct=True, dtype=dtype)
    data = to_batch(batch, dtype)
    with torch.no_grad():
        ref = model(data)
        with edge_chunks(model, chunk):
            out = model(data)
    for key in ref:
        scale = float(ref[key].abs().max())
        assert scale > 0, key
        assert float((out[key] - ref[key]).abs().max()) <= tol * scale, key


def test_chunked_conservative_forces_match(batch):
    model = small_model(direct=False, dtype=torch.float64)
    data = to_batch(batch, torch.float64)
    ref = model(data)
    with edge_chunks(model, 13):
        out = model(data)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-10, atol=1e-12)


def test_edge_chunks_restores_the_setting():
    model = small_model(direct=True, dtype=torch.float32)
    set_edge_chunk_size(model, 50)
    with edge_chunks(model, 3):
        assert {m.edge_chunk_size for m in model.modules() if isinstance(m, MessageBlock)} == {3}
    assert {m.edge_chunk_size for m in model.modules() if isinstance(m, MessageBlock)} == {50}


def test_chunk_size_for_a_memory_budget():
    assert chunk_size_for(512, 512.0) == 512 * 2**20 // (3 * 512 * 4)
    with pytest.raises(ValueError, match="positive"):
        chunk_size_for(512, 0.0)
    with pytest.raises(ValueError, match="positive number of edges"):
        set_edge_chunk_size(small_model(True, torch.float32), 0)
