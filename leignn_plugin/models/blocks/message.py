"""Equivariant message passing from neighbours j to atom i."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from leignn_plugin.models.blocks.activation import mlp
from leignn_plugin.models.blocks.edge_buffers import EdgeBuffers
from leignn_plugin.models.blocks.recomputed_gathers import RecomputedGathers

DenseSum = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def autocast_active(device: torch.device) -> bool:
    """Whether automatic mixed precision is on for ``device``'s kind."""
    if device.type == "cpu":
        return torch.is_autocast_cpu_enabled()
    return torch.is_autocast_enabled()


class MessageBlock(nn.Module):
    """[a, b, c]_ij = MLP_m(x_j) * W_r(e_ij) / sqrt(3).

    dv_i = sum_j (a_ij v_j + b_ij n_ij) / sqrt(F);  dx_i = sum_j c_ij;
    x_i <- (x_i + dx_i) / sqrt(2);  v_i <- v_i + dv_i.

    ``edge_chunk_size`` (not saved with the model) processes the edges in chunks of that many, which
    bounds the memory of the per-edge tensors [E, 3F] and [E, 3, F] for large systems; the sums are
    accumulated in the same order, so the result changes only by matmul rounding.

    ``dense_sum`` (set by the compiled inference path: ``dense_sums.dense_message_sums`` or its
    compiled form) sums each atom's messages over a padded [N, K] table of its incoming edges
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

    def edge_filter(self, edge_features: torch.Tensor) -> torch.Tensor:
        """W_r(rbf) * envelope / sqrt(3) as one matmul: [rbf * env, env] @ [W^T; b] / sqrt(3)."""
        return edge_features @ self.filter_weight().to(edge_features.dtype)  # [E, 3F]

    def add_edge_sums(
        self,
        node_part: torch.Tensor,
        v: torch.Tensor,
        edge_features: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        dx: torch.Tensor,
        dv: torch.Tensor,
        buffers: EdgeBuffers | None = None,
    ) -> None:
        """Add the messages of the given edges onto their targets, in place: dx [N, F], dv [N, 3, F].

        With autograd on, every per-edge tensor is a new one (the backward pass reads them); without,
        the products are done in place in ``buffers``, reused across layers and edge chunks. Under
        autocast the dtypes of the products vary, so that case also takes the allocating path.
        """
        if torch.is_grad_enabled() or autocast_active(v.device):
            self._add_recorded_edge_sums(node_part, v, edge_features, unit_vec, edge_index, dx, dv)
        else:
            self._add_edge_sums_in_place(node_part, v, edge_features, unit_vec, edge_index, dx, dv,
                                         buffers if buffers is not None else EdgeBuffers())

    def _add_recorded_edge_sums(self, node_part: torch.Tensor, v: torch.Tensor, edge_features: torch.Tensor,
                                unit_vec: torch.Tensor, edge_index: torch.Tensor, dx: torch.Tensor,
                                dv: torch.Tensor) -> None:
        j, i = edge_index[0], edge_index[1]
        with RecomputedGathers().saving() as gathers:
            msg = self.edge_filter(edge_features) * gathers.gather(node_part, j)  # [E, 3F]
            a, b, c = torch.split(msg, self.hidden_channels, dim=-1)  # [E, F] each
            dx.index_add_(0, i, c)  # [N, F]
            vec_msg = torch.addcmul(gathers.gather(v, j) * a.unsqueeze(1), b.unsqueeze(1),
                                    unit_vec.unsqueeze(-1))  # [E, 3, F]
            dv.index_add_(0, i, vec_msg)  # [N, 3, F]

    def _add_edge_sums_in_place(self, node_part: torch.Tensor, v: torch.Tensor, edge_features: torch.Tensor,
                                unit_vec: torch.Tensor, edge_index: torch.Tensor, dx: torch.Tensor,
                                dv: torch.Tensor, buffers: EdgeBuffers) -> None:
        j, i = edge_index[0], edge_index[1]
        num_edges, f = j.shape[0], self.hidden_channels
        weight = self.filter_weight().to(edge_features.dtype)  # [R + 1, 3F]
        msg = torch.mm(edge_features, weight, out=buffers.get("filter", (num_edges, 3 * f), v))  # [E, 3F]
        gathered = buffers.get("gather", (num_edges, 3 * f), v)  # [E, 3F]
        msg.mul_(torch.index_select(node_part, 0, j, out=gathered))
        a, b, c = torch.split(msg, f, dim=-1)  # [E, F] each, strided
        # index_add_ of a strided source falls back to a slow scatter: copy c out first.
        dx.index_add_(0, i, buffers.get("scalar", (num_edges, f), v).copy_(c))  # [N, F]
        vec_msg = torch.index_select(v, 0, j, out=gathered.view(num_edges, 3, f))  # [E, 3, F]
        vec_msg.mul_(a.unsqueeze(1)).addcmul_(b.unsqueeze(1), unit_vec.unsqueeze(-1))  # [E, 3, F]
        dv.index_add_(0, i, vec_msg)  # [N, 3, F]

    def dense_edge_sums(self, node_part: torch.Tensor, v: torch.Tensor, edge_features: torch.Tensor,
                        unit_vec: torch.Tensor, edge_index: torch.Tensor, buffers: EdgeBuffers
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx [N, F], dv [N, 3, F] by ``self.dense_sum`` over the graph's dense neighbour table."""
        table = buffers.dense_table(edge_index, unit_vec, edge_features, v.shape[0])
        if torch.is_grad_enabled() or autocast_active(v.device):
            edge_filter = self.edge_filter(table.edge_features)  # [E + 1, 3F]
        else:
            weight = self.filter_weight().to(v.dtype)  # [R + 1, 3F]
            shape = (table.edge_features.shape[0], weight.shape[1])
            edge_filter = torch.mm(table.edge_features, weight, out=buffers.get("filter", shape, v))  # [E + 1, 3F]
        return self.dense_sum(edge_filter, node_part, v, table.unit_vec, table.source, table.slots)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        edge_features: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        buffers: EdgeBuffers | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], edge_features [E, R + 1] (radial block), unit_vec [E, 3] (from j to i)."""
        node_part = self.node_mlp(x)  # [N, 3F]
        dx, dv = torch.zeros_like(x), torch.zeros_like(v)  # [N, F], [N, 3, F]
        num_edges = edge_index.shape[1]
        size = self.edge_chunk_size
        if self.dense_sum is not None and (size is None or num_edges <= size):
            dx, dv = self.dense_edge_sums(node_part, v, edge_features, unit_vec, edge_index,
                                          buffers if buffers is not None else EdgeBuffers())
        elif size is None or num_edges <= size:
            self.add_edge_sums(node_part, v, edge_features, unit_vec, edge_index, dx, dv, buffers)
        else:
            for start in range(0, num_edges, size):
                part = slice(start, min(num_edges, start + size))
                self.add_edge_sums(node_part, v, edge_features[part], unit_vec[part],
                                   edge_index[:, part], dx, dv, buffers)
        return (x + dx) * self.inv_sqrt_2, v + dv * self.inv_sqrt_f
