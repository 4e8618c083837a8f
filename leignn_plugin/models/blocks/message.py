"""Equivariant message passing from neighbours j to atom i."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from leignn_plugin.models.blocks.activation import mlp
from leignn_plugin.models.blocks.edge_buffers import EdgeBuffers
from leignn_plugin.models.blocks.radial_bands import RadialBands
from leignn_plugin.models.blocks.recomputed_gathers import RecomputedGathers

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


class MessageBlock(nn.Module):
    """[a, b, c]_ij = MLP_m(x_j) * W_r(e_ij) / sqrt(3).

    dv_i = sum_j (a_ij v_j + b_ij n_ij) / sqrt(F);  dx_i = sum_j c_ij;
    x_i <- (x_i + dx_i) / sqrt(2);  v_i <- v_i + dv_i.

    ``edge_chunk_size`` (not saved with the model) processes the edges in chunks of that many, which
    bounds the memory of the per-edge tensors [E, 3F] and [E, 3, F] for large systems; the sums are
    accumulated in the same order, so the result changes only by matmul rounding.

    ``dense_sum`` (set by the compiled inference path: ``dense_sums.dense_message_sums`` or its
    compiled form) sums each atom's messages over a padded [K, N] table of its incoming edges
    instead of scattering them, which a compiler fuses into one pass; in eager mode it only costs memory.
    """

    def __init__(self, hidden_channels: int, num_rbf: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.node_mlp = mlp([hidden_channels, hidden_channels // 2, 3 * hidden_channels], final_activation=False)
        self.radial = nn.Linear(num_rbf, 3 * hidden_channels)
        self.inv_sqrt_3 = 1.0 / math.sqrt(3.0)
        self.inv_sqrt_f = 1.0 / math.sqrt(hidden_channels)
        self.inv_sqrt_2 = 1.0 / math.sqrt(2.0)
        self.edge_chunk_size: int | None = None
        self.dense_sum: DenseSum | None = None

    def filter_weight(self) -> torch.Tensor:
        """[W^T; b] / sqrt(3): the radial filter's weights and bias as one [R + 1, 3F] matrix."""
        return torch.cat([self.radial.weight.t(), self.radial.bias.unsqueeze(0)], dim=0) * self.inv_sqrt_3

    def recorded_piece_edges(self, like: torch.Tensor) -> int:
        """Edges per piece of a recorded pass: its [E, 3F] tensors stay within RECORDED_PIECE_BYTES."""
        return max(1, RECORDED_PIECE_BYTES // (3 * self.hidden_channels * like.element_size()))

    def add_edge_sums(
        self,
        node_part: torch.Tensor,
        v: torch.Tensor,
        radial: RadialBands,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        dx: torch.Tensor,
        dv: torch.Tensor,
        weight: torch.Tensor,
        buffers: EdgeBuffers | None = None,
    ) -> None:
        """Add the messages of the given edges onto their targets, in place: dx [N, F], dv [N, 3, F].

        ``weight``: :meth:`filter_weight`, built once by the caller for all its edge pieces.

        With autograd on, every per-edge tensor is a new one (the backward pass reads them); without,
        the products are done in place in ``buffers``, reused across layers and edge chunks. Under
        autocast the dtypes of the products vary, so that case also takes the allocating path.
        """
        if recording(v.device):
            self._add_recorded_edge_sums(node_part, v, radial, unit_vec, edge_index, dx, dv, weight)
        else:
            self._add_edge_sums_in_place(node_part, v, radial, unit_vec, edge_index, dx, dv, weight,
                                         buffers if buffers is not None else EdgeBuffers())

    def _add_recorded_edge_sums(self, node_part: torch.Tensor, v: torch.Tensor, radial: RadialBands,
                                unit_vec: torch.Tensor, edge_index: torch.Tensor, dx: torch.Tensor,
                                dv: torch.Tensor, weight: torch.Tensor) -> None:
        j, i = edge_index[0], edge_index[1]
        with RecomputedGathers().saving() as gathers:
            msg = radial.filter(weight) * gathers.gather(node_part, j)  # [E, 3F]
            a, b, c = torch.split(msg, self.hidden_channels, dim=-1)  # [E, F] each
            dx.index_add_(0, i, c)  # [N, F]
            vec_msg = torch.addcmul(gathers.gather(v, j) * a.unsqueeze(1), b.unsqueeze(1),
                                    unit_vec.unsqueeze(-1))  # [E, 3, F]
            dv.index_add_(0, i, vec_msg)  # [N, 3, F]

    def _add_edge_sums_in_place(self, node_part: torch.Tensor, v: torch.Tensor, radial: RadialBands,
                                unit_vec: torch.Tensor, edge_index: torch.Tensor, dx: torch.Tensor,
                                dv: torch.Tensor, weight: torch.Tensor, buffers: EdgeBuffers) -> None:
        j, i = edge_index[0], edge_index[1]
        num_edges, f = j.shape[0], self.hidden_channels
        msg = radial.filter(weight, out=buffers.get("filter", (num_edges, 3 * f), v))  # [E, 3F]
        gathered = buffers.get("gather", (num_edges, 3 * f), v)  # [E, 3F]
        msg.mul_(torch.index_select(node_part, 0, j, out=gathered))
        a, b, c = torch.split(msg, f, dim=-1)  # [E, F] each, strided
        # index_add_ of a strided source falls back to a slow scatter: copy c out first.
        dx.index_add_(0, i, buffers.get("scalar", (num_edges, f), v).copy_(c))  # [N, F]
        vec_msg = torch.index_select(v, 0, j, out=gathered.view(num_edges, 3, f))  # [E, 3, F]
        vec_msg.mul_(a.unsqueeze(1)).addcmul_(b.unsqueeze(1), unit_vec.unsqueeze(-1))  # [E, 3, F]
        dv.index_add_(0, i, vec_msg)  # [N, 3, F]

    def dense_edge_sums(self, node_part: torch.Tensor, v: torch.Tensor, radial: RadialBands,
                        unit_vec: torch.Tensor, edge_index: torch.Tensor, buffers: EdgeBuffers
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx [N, F], dv [N, 3, F] by ``self.dense_sum`` over the graph's dense neighbour table."""
        table = buffers.dense_table(edge_index, unit_vec, radial, v.shape[0])
        out = None
        if not recording(v.device):
            out = buffers.get("filter", (table.radial.num_edges, 3 * self.hidden_channels), v)
        edge_filter = table.radial.filter(self.filter_weight(), out=out)  # [E + 1, 3F]
        return self.dense_sum(edge_filter, node_part, v, table.unit_vec, table.source, table.slots)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        radial: RadialBands,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        buffers: EdgeBuffers | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], radial: the pass's banded radial features, unit_vec [E, 3] (from j
        to i) and edge_index [2, E], both in the bands' edge order."""
        node_part = self.node_mlp(x)  # [N, 3F]
        dx, dv = torch.zeros_like(x), torch.zeros_like(v)  # [N, F], [N, 3, F]
        size = self.edge_chunk_size
        if self.dense_sum is not None and (size is None or radial.num_edges <= size):
            dx, dv = self.dense_edge_sums(node_part, v, radial, unit_vec, edge_index,
                                          buffers if buffers is not None else EdgeBuffers())
        else:
            record = recording(v.device)
            if record and v.device.type == "cpu":
                size = min(size or radial.num_edges, self.recorded_piece_edges(v))
            weight = self.filter_weight()  # [R + 1, 3F], shared by the pieces
            for part in radial.parts(size, split_bands=record):
                self.add_edge_sums(node_part, v, radial.rows(part), unit_vec[part], edge_index[:, part],
                                   dx, dv, weight, buffers)
        return (x + dx) * self.inv_sqrt_2, v + dv * self.inv_sqrt_f
