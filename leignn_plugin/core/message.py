"""Equivariant message passing from neighbours j to atom i (the paper's message block).

    [a, b, c]_ij = phi(x_j) * W_r(e_ij) / sqrt(3)
    dv_i = sum_j (a_ij v_j + b_ij n_ij) / sqrt(F);   dx_i = sum_j c_ij
    x_i <- (x_i + dx_i) / sqrt(2);                    v_i <- v_i + dv_i

with phi an MLP on the neighbour's scalars, W_r a linear filter of the radial features e_ij and
n_ij the unit vector from j to i. :func:`filter_products` and :func:`vector_messages` are the
per-edge equations, written once: the plain block below and every fast path in
``leignn_plugin.accel`` call them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.core.activation import mlp
from leignn_plugin.core.edges import EdgeSet
from leignn_plugin.core.parallel import AtomShare


def filter_products(edge_filter: torch.Tensor, node_j: torch.Tensor, in_place: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[a, b, c] = W_r(e_ij) / sqrt(3) * phi(x_j): three [..., F] views of one product.

    edge_filter, node_j [..., 3F]; the leading dimensions are any edge layout ([E] or a [K, N]
    table). ``in_place`` writes the product into ``edge_filter`` (scratch the caller owns).
    """
    msg = torch.mul(edge_filter, node_j, out=edge_filter if in_place else None)  # [..., 3F]
    return torch.split(msg, msg.shape[-1] // 3, dim=-1)  # [..., F] each


def vector_messages(a: torch.Tensor, b: torch.Tensor, v_j: torch.Tensor, unit_vec: torch.Tensor,
                    in_place: bool = False) -> torch.Tensor:
    """a v_j + b n_ij [..., 3, F] from a, b [..., F], v_j [..., 3, F], unit_vec [..., 3].

    ``in_place`` writes the result into ``v_j`` (scratch the caller owns).
    """
    vec = torch.mul(v_j, a.unsqueeze(-2), out=v_j if in_place else None)  # [..., 3, F]
    return torch.addcmul(vec, b.unsqueeze(-2), unit_vec.unsqueeze(-1), out=vec if in_place else None)


class MessageBlock(nn.Module):
    """phi = ``node_mlp`` (F -> F/2 -> 3F), W_r = ``radial`` (R -> 3F, its bias faded by the envelope)."""

    def __init__(self, hidden_channels: int, num_rbf: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.node_mlp = mlp([hidden_channels, hidden_channels // 2, 3 * hidden_channels], final_activation=False)
        self.radial = nn.Linear(num_rbf, 3 * hidden_channels)
        self.inv_sqrt_3 = 1.0 / math.sqrt(3.0)
        self.inv_sqrt_f = 1.0 / math.sqrt(hidden_channels)
        self.inv_sqrt_2 = 1.0 / math.sqrt(2.0)

    def filter_weight(self) -> torch.Tensor:
        """[W^T; b] / sqrt(3): the radial filter's weights and bias as one [R + 1, 3F] matrix.

        The radial features end with the envelope column, so ``features @ filter_weight()`` is
        (W e_ij + b * envelope) / sqrt(3).
        """
        return torch.cat([self.radial.weight.t(), self.radial.bias.unsqueeze(0)], dim=0) * self.inv_sqrt_3

    def message_sums(self, node_part: torch.Tensor, v: torch.Tensor, edges: EdgeSet
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx [N, F] = sum_j c_ij and dv [N, 3, F] = sum_j (a_ij v_j + b_ij n_ij): gather, filter, index_add."""
        j, i = edges.edge_index[0], edges.edge_index[1]
        edge_filter = edges.radial @ self.filter_weight().to(edges.radial.dtype)  # [E, 3F]
        a, b, c = filter_products(edge_filter, node_part[j])  # [E, F] each
        vec = vector_messages(a, b, v[j], edges.unit_vec)  # [E, 3, F]
        dx = node_part.new_zeros((v.shape[0], self.hidden_channels)).index_add_(0, i, c)  # [N, F]
        dv = torch.zeros_like(v).index_add_(0, i, vec)  # [N, 3, F]
        return dx, dv

    def forward(self, x: torch.Tensor, v: torch.Tensor, edges: EdgeSet, share: AtomShare | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F] -> updated x, v.

        Under graph parallelism (``share``: x, v hold this rank's n_r atoms, ``edges`` the edges ending on
        them, with global indices) every rank's phi(x_j) and v_j are gathered first and the sums kept for
        this rank's atoms.
        """
        node_part = self.node_mlp(x)  # [N, 3F]
        if share is None:
            dx, dv = self.message_sums(node_part, v, edges)
        else:
            dx, dv = self.message_sums(share.gather(node_part), share.gather(v), edges)  # [N, F], [N, 3, F]
            dx, dv = share.local(dx), share.local(dv)  # [n_r, F], [n_r, 3, F]
        return (x + dx) * self.inv_sqrt_2, v + dv * self.inv_sqrt_f
