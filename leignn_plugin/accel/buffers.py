"""Scratch memory and graph tables shared by the message blocks of one forward pass."""

from __future__ import annotations

import math

import torch

from leignn_plugin.accel.bands import RadialBands
from leignn_plugin.accel.dense_sums import DenseNeighborTable


class EdgeBuffers:
    """Named flat buffers handed out as views of the requested shape, grown when too small; and the
    dense neighbour table of the pass's graph, built on first use.

    Each message block writes [E, 3F] tensors (radial filter, gathered node features, gathered
    vectors). Fresh tensors of that size come from new pages of the operating system, and touching
    them costs about as much as the work done in them (benchmarks/README.md, "What was optimised").
    Without autograd nothing needs those tensors after the layer, so the layers of one forward pass
    (and the edge chunks of one layer) share one set of buffers. Create one per forward pass.
    """

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}
        self._table: DenseNeighborTable | None = None
        self._table_graph: torch.Tensor | None = None

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with the dtype and device of ``like``."""
        numel = math.prod(shape)
        buf = self._store.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._store[name] = buf
        return buf[:numel].view(shape)

    def dense_table(self, edge_index: torch.Tensor, unit_vec: torch.Tensor, radial: RadialBands,
                    num_nodes: int) -> DenseNeighborTable:
        """The dense neighbour table of the graph ``edge_index``, built once for all layers."""
        if self._table is None or self._table_graph is not edge_index:
            self._table = DenseNeighborTable.build(edge_index, unit_vec, radial, num_nodes)
            self._table_graph = edge_index
        return self._table
