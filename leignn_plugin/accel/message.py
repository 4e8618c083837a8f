"""The message block's speed paths: in-place buffers, recorded pieces, recomputed gathers, banded
filters, edge chunks and dense (compilable) sums, around the core's per-edge equations.

Every path computes the core's :func:`~leignn_plugin.core.message.filter_products` and
:func:`~leignn_plugin.core.message.vector_messages`; only where tensors live and in which pieces the
edges go differ. The block keeps the core block's parameters (it *is* that module, its class
swapped by ``swap.accelerate``), so state dicts, optimisers and DDP see no change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from leignn_plugin.accel.bands import RadialBands
from leignn_plugin.accel.buffers import EdgeBuffers
from leignn_plugin.accel.edges import FastEdgeSet
from leignn_plugin.accel.recomputed_gathers import RecomputedGathers
from leignn_plugin.core.message import MessageBlock, filter_products, vector_messages

# Recorded (autograd) passes go through the edges in pieces whose [E, 3F] tensors take at most this
# many bytes, and band by band. Pieces this small come from the allocator's reused heap; a whole
# [E, 3F] tensor (70 MB on the benchmark batch) is a fresh mapping from the operating system each
# time, paid for in page faults: without radial bands the training step took 1.61 s with whole
# tensors and 0.96 s in pieces (``benchmarks/training_pieces.py``, LEIGNN 512x4, 2 cores). CPU only:
# CUDA's caching allocator already reuses memory, and pieces would only add kernel launches there.
RECORDED_PIECE_BYTES = 8 << 20

DenseSum = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def recording(device: torch.device) -> bool:
    """Whether per-edge tensors must be new ones: autograd records them, or autocast picks their dtypes."""
    autocast = torch.is_autocast_cpu_enabled() if device.type == "cpu" else torch.is_autocast_enabled()
    return torch.is_grad_enabled() or autocast


class FastMessageBlock(MessageBlock):
    """The core message block with its sums computed by the speed paths.

    Attributes (none saved with the model):
        recorded_pieces: under autograd, go through the edges in pieces of RECORDED_PIECE_BYTES (CPU).
        edge_chunk_size: at most this many edges at once (None: all), which bounds the memory of
            the per-edge tensors for large systems; the sums keep their order, so the result changes
            only by matmul rounding.
        dense_sum: sum each atom's messages over a padded [K, N] table of its incoming edges
            (``dense_sums.dense_message_sums`` or its compiled form) instead of scattering them,
            which a compiler fuses into one pass; in eager mode it only costs memory.
    """

    recorded_pieces: bool = True
    edge_chunk_size: int | None = None
    dense_sum: DenseSum | None = None

    def recorded_piece_edges(self, like: torch.Tensor) -> int:
        """Edges per piece of a recorded pass: its [E, 3F] tensors stay within RECORDED_PIECE_BYTES."""
        return max(1, RECORDED_PIECE_BYTES // (3 * self.hidden_channels * like.element_size()))

    def message_sums(self, node_part: torch.Tensor, v: torch.Tensor, edges: FastEdgeSet
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        bands, size = edges.bands, self.edge_chunk_size
        if self.dense_sum is not None and (size is None or bands.num_edges <= size):
            return self.dense_edge_sums(node_part, v, edges)
        dx = node_part.new_zeros((v.shape[0], self.hidden_channels))  # [N, F]
        dv = torch.zeros_like(v)  # [N, 3, F]
        record = recording(v.device)
        if record and self.recorded_pieces:
            size = min(size or bands.num_edges, self.recorded_piece_edges(v))
        weight = self.filter_weight()  # [R + 1, 3F], shared by the pieces
        for part in bands.parts(size, split_bands=record):
            add = self._add_recorded if record else self._add_in_place
            add(node_part, v, bands.rows(part), edges.unit_vec[part], edges.edge_index[:, part], dx, dv, weight,
                edges.buffers)
        return dx, dv

    def _add_recorded(self, node_part: torch.Tensor, v: torch.Tensor, bands: RadialBands, unit_vec: torch.Tensor,
                      edge_index: torch.Tensor, dx: torch.Tensor, dv: torch.Tensor, weight: torch.Tensor,
                      buffers: EdgeBuffers) -> None:
        """New tensors for autograd; the two gathers are stored as recipes and redone in backward."""
        j, i = edge_index[0], edge_index[1]
        with RecomputedGathers().saving() as gathers:
            a, b, c = filter_products(bands.filter(weight), gathers.gather(node_part, j))  # [E, F] each
            dx.index_add_(0, i, c)  # [N, F]
            dv.index_add_(0, i, vector_messages(a, b, gathers.gather(v, j), unit_vec))  # [N, 3, F]

    def _add_in_place(self, node_part: torch.Tensor, v: torch.Tensor, bands: RadialBands, unit_vec: torch.Tensor,
                      edge_index: torch.Tensor, dx: torch.Tensor, dv: torch.Tensor, weight: torch.Tensor,
                      buffers: EdgeBuffers) -> None:
        """No autograd: every product is written into the pass's reused buffers."""
        j, i = edge_index[0], edge_index[1]
        num_edges, f = j.shape[0], self.hidden_channels
        edge_filter = bands.filter(weight, out=buffers.get("filter", (num_edges, 3 * f), v))  # [E, 3F]
        gathered = buffers.get("gather", (num_edges, 3 * f), v)  # [E, 3F]
        a, b, c = filter_products(edge_filter, torch.index_select(node_part, 0, j, out=gathered), in_place=True)
        # index_add_ of a strided source falls back to a slow scatter: copy c out first.
        dx.index_add_(0, i, buffers.get("scalar", (num_edges, f), v).copy_(c))  # [N, F]
        v_j = torch.index_select(v, 0, j, out=gathered.view(num_edges, 3, f))  # [E, 3, F], reuses the buffer
        dv.index_add_(0, i, vector_messages(a, b, v_j, unit_vec, in_place=True))  # [N, 3, F]

    def dense_edge_sums(self, node_part: torch.Tensor, v: torch.Tensor, edges: FastEdgeSet
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx [N, F], dv [N, 3, F] by ``self.dense_sum`` over the graph's dense neighbour table."""
        buffers = edges.buffers
        table = buffers.dense_table(edges.edge_index, edges.unit_vec, edges.bands, v.shape[0])
        out = None
        if not recording(v.device):
            out = buffers.get("filter", (table.radial.num_edges, 3 * self.hidden_channels), v)
        edge_filter = table.radial.filter(self.filter_weight(), out=out)  # [E + 1, 3F]
        return self.dense_sum(edge_filter, node_part, v, table.unit_vec, table.source, table.slots)
