"""Equivariant message passing from neighbours j to atom i."""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.models.blocks.activation import mlp


def neighbor_slots(target: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """[N, K] table of each atom's incoming edges in edge order (K = largest in-degree); E pads."""
    num_edges = target.shape[0]
    order = torch.argsort(target, stable=True)  # [E], edges grouped by target, in edge order
    degree = torch.bincount(target, minlength=num_nodes)  # [N]
    width = int(degree.max()) if num_edges else 0
    sorted_target = target[order]
    rank = torch.arange(num_edges, device=target.device) - (torch.cumsum(degree, 0) - degree)[sorted_target]
    slots = torch.full((num_nodes * width,), num_edges, dtype=torch.long, device=target.device)
    slots[sorted_target * width + rank] = order
    return slots.view(num_nodes, width)  # [N, K]


class MessageBlock(nn.Module):
    """[a, b, c]_ij = MLP_m(x_j) * W_r(e_ij) / sqrt(3).

    dv_i = sum_j (a_ij v_j + b_ij n_ij) / sqrt(F);  dx_i = sum_j c_ij;
    x_i <- (x_i + dx_i) / sqrt(2);  v_i <- v_i + dv_i.

    ``edge_chunk_size`` (not saved with the model) processes the edges in chunks of that many, which
    bounds the memory of the per-edge tensors [E, 3F] and [E, 3, F] for large systems; the sums are
    accumulated in the same order, so the result changes only by matmul rounding.

    ``dense_neighbors`` (set by the compiled inference path) sums each atom's messages over a padded
    [N, K] table of its incoming edges instead of scattering them: a compiler fuses the gathers,
    products and the sum into one pass without atomics; in eager mode it only costs memory.
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
        self.dense_neighbors = False

    def edge_filter(self, rbf: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """W_r(rbf) * envelope / sqrt(3) as one matmul: [rbf * s, s] @ [W^T; b] with s = envelope / sqrt(3)."""
        scale = (envelope * self.inv_sqrt_3).unsqueeze(-1)  # [E, 1]
        weight = torch.cat([self.radial.weight.t(), self.radial.bias.unsqueeze(0)], dim=0)  # [R + 1, 3F]
        return torch.cat([rbf * scale, scale], dim=-1) @ weight.to(rbf.dtype)  # [E, 3F]

    def add_edge_sums(
        self,
        node_part: torch.Tensor,
        v: torch.Tensor,
        rbf: torch.Tensor,
        envelope: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        dx: torch.Tensor,
        dv: torch.Tensor,
    ) -> None:
        """Add the messages of the given edges onto their targets, in place: dx [N, F], dv [N, 3, F]."""
        j, i = edge_index[0], edge_index[1]
        f = self.hidden_channels
        recording = torch.is_grad_enabled()
        msg = self.edge_filter(rbf, envelope)  # [E, 3F]
        gathered = node_part.index_select(0, j)  # [E, 3F]
        msg = msg * gathered if recording else msg.mul_(gathered)
        a, b, c = torch.split(msg, f, dim=-1)  # [E, F] each
        dx.index_add_(0, i, c)  # [N, F]
        v_j = v.index_select(0, j)  # [E, 3, F]
        vec_msg = v_j * a.unsqueeze(1) if recording else v_j.mul_(a.unsqueeze(1))  # [E, 3, F]
        b_n = (b.unsqueeze(1), unit_vec.unsqueeze(-1))  # [E, 1, F], [E, 3, 1]
        vec_msg = torch.addcmul(vec_msg, *b_n) if recording else vec_msg.addcmul_(*b_n)  # [E, 3, F]
        dv.index_add_(0, i, vec_msg)  # [N, 3, F]

    def dense_edge_sums(
        self,
        node_part: torch.Tensor,
        v: torch.Tensor,
        rbf: torch.Tensor,
        envelope: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx [N, F], dv [N, 3, F] summed over ``slots`` [N, K]: each atom's edges in edge order, E = empty."""
        f = self.hidden_channels
        filt = self.edge_filter(rbf, envelope)  # [E, 3F]
        filt = torch.cat([filt, filt.new_zeros((1, filt.shape[1]))])  # [E + 1, 3F], last row for empty slots
        source = torch.cat([edge_index[0], edge_index.new_zeros(1)])[slots]  # [N, K]
        unit = torch.cat([unit_vec, unit_vec.new_zeros((1, 3))])[slots]  # [N, K, 3]
        msg = filt[slots] * node_part[source]  # [N, K, 3F]
        a, b, c = torch.split(msg, f, dim=-1)  # [N, K, F] each
        dv = a.unsqueeze(2) * v[source] + b.unsqueeze(2) * unit.unsqueeze(-1)  # [N, K, 3, F]
        return c.sum(dim=1), dv.sum(dim=1)  # [N, F], [N, 3, F]

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        rbf: torch.Tensor,
        envelope: torch.Tensor,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], rbf [E, R], envelope [E], unit_vec [E, 3] (from j to i)."""
        node_part = self.node_mlp(x)  # [N, 3F]
        dx, dv = torch.zeros_like(x), torch.zeros_like(v)  # [N, F], [N, 3, F]
        num_edges = edge_index.shape[1]
        size = self.edge_chunk_size
        if self.dense_neighbors and (size is None or num_edges <= size):
            dx, dv = self.dense_edge_sums(node_part, v, rbf, envelope, unit_vec, edge_index,
                                          neighbor_slots(edge_index[1], x.shape[0]))
        elif size is None or num_edges <= size:
            self.add_edge_sums(node_part, v, rbf, envelope, unit_vec, edge_index, dx, dv)
        else:
            for start in range(0, num_edges, size):
                part = slice(start, min(num_edges, start + size))
                self.add_edge_sums(node_part, v, rbf[part], envelope[part], unit_vec[part],
                                   edge_index[:, part], dx, dv)
        return (x + dx) * self.inv_sqrt_2, v + dv * self.inv_sqrt_f
