"""The message sum over a padded [K, N] table of each atom's incoming edges, for compilers.

Eager mode scatters per-edge messages onto their targets (``index_add_``). A compiler cannot fuse a
scatter with the gathers and products before it without atomics, but it fuses a gather-multiply-sum
over a dense neighbour table into one loop per atom that never writes the per-edge [E, 3F] and
[E, 3, F] products. The table pads every atom to the largest in-degree K with the index E, which
points at an all-zero row appended to the per-edge inputs, so padded slots add exact zeros.

The table is slot-major, [K, N]: the sum runs over the leading dimension, so inductor's CPU code
loads 16 channels of a neighbour's row at once and adds over the slots. Atom-major [N, K] made it
vectorise over the slots instead, with a scalar gather per neighbour, which measured slower
(benchmarks/README.md, "Compiled inference").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leignn_plugin.accel.bands import RadialBands
from leignn_plugin.core.message import filter_products, vector_messages


def neighbor_slots(target: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """[K, N] table of each atom's incoming edges in edge order (K = largest in-degree); E pads."""
    num_edges = target.shape[0]
    order = torch.argsort(target, stable=True)  # [E], edges grouped by target, in edge order
    degree = torch.bincount(target, minlength=num_nodes)  # [N]
    width = int(degree.max()) if num_edges else 0
    sorted_target = target[order]
    rank = torch.arange(num_edges, device=target.device) - (torch.cumsum(degree, 0) - degree)[sorted_target]
    slots = torch.full((width * num_nodes,), num_edges, dtype=torch.long, device=target.device)
    slots[rank * num_nodes + sorted_target] = order
    return slots.view(width, num_nodes)  # [K, N]


@dataclass
class DenseNeighborTable:
    """Per-graph inputs of the dense sum, built once and shared by every layer.

    slots: [K, N] edge of each slot, E for padding; source: [K, N] its source atom (0 for padding);
    unit_vec: [K, N, 3] its unit vector (zero for padding); radial: the radial features of E + 1
    edges, the last all zero for padding, so that the filter of a padded slot is exactly zero.
    """

    slots: torch.Tensor
    source: torch.Tensor
    unit_vec: torch.Tensor
    radial: RadialBands

    @classmethod
    def build(cls, edge_index: torch.Tensor, unit_vec: torch.Tensor, radial: RadialBands,
              num_nodes: int) -> DenseNeighborTable:
        slots = neighbor_slots(edge_index[1], num_nodes)  # [K, N]
        source = torch.cat([edge_index[0], edge_index.new_zeros(1)])[slots]  # [K, N]
        unit = torch.cat([unit_vec, unit_vec.new_zeros((1, 3))])[slots]  # [K, N, 3]
        return cls(slots=slots, source=source, unit_vec=unit, radial=radial.with_zero_row())


def dense_message_sums(edge_filter: torch.Tensor, node_part: torch.Tensor, v: torch.Tensor,
                       unit_vec: torch.Tensor, source: torch.Tensor, slots: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """dx [N, F] = sum_k c, dv [N, 3, F] = sum_k (a v_source + b n): the core's message over the table.

    edge_filter [E + 1, 3F] (last row zero), node_part [N, 3F], v [N, 3, F], unit_vec [K, N, 3],
    source and slots [K, N]. Pure tensor code with no in-place writes: what torch.compile fuses.
    """
    a, b, c = filter_products(edge_filter[slots], node_part[source])  # [K, N, F] each
    vec = vector_messages(a, b, v[source], unit_vec)  # [K, N, 3, F]
    return c.sum(dim=0), vec.sum(dim=0)  # [N, F], [N, 3, F]
