"""The edge inputs of a pass for the fast message blocks: edges in band order, and scratch memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from leignn_plugin.accel.bands import RadialBands, radial_bands
from leignn_plugin.accel.buffers import EdgeBuffers


@dataclass
class FastEdgeSet:
    """edge_index [2, E] and unit_vec [E, 3] in the order of ``bands`` (the radial features cut into
    column windows), and the pass's :class:`EdgeBuffers`, shared by every layer."""

    edge_index: torch.Tensor
    unit_vec: torch.Tensor
    bands: RadialBands
    buffers: EdgeBuffers


class FastEdgeLayout(nn.Module):
    """Replaces the core's ``EdgeLayout``: with ``banded``, sorts the edges into radial bands so that
    each band's filter multiplies only its window of basis columns (``bands.py``)."""

    def __init__(self, banded: bool = True) -> None:
        super().__init__()
        self.banded = banded

    def forward(self, edge_index: torch.Tensor, unit_vec: torch.Tensor, radial: torch.Tensor) -> FastEdgeSet:
        bands, order = (radial_bands(radial) if self.banded else (RadialBands.whole(radial), None))
        if order is not None:  # the layers see the edges in band order
            edge_index, unit_vec = edge_index[:, order], unit_vec[order]
        return FastEdgeSet(edge_index=edge_index, unit_vec=unit_vec, bands=bands, buffers=EdgeBuffers())
