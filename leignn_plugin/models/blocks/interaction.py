"""One LEIGNN layer: global -> local, message, node update, local -> global."""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.models.blocks.edge_buffers import EdgeBuffers
from leignn_plugin.models.blocks.global_scalar import GlobalScalarToLocal, LocalScalarToGlobal
from leignn_plugin.models.blocks.global_vector import GlobalVectorToLocal, LocalVectorToGlobal
from leignn_plugin.models.blocks.message import MessageBlock
from leignn_plugin.models.blocks.radial_bands import RadialBands
from leignn_plugin.models.blocks.update import NodeUpdateBlock


class InteractionLayer(nn.Module):
    """The four steps of a LEIGNN layer, in the paper's order.

    ``last=True`` drops the local -> global step (nothing reads the virtual node afterwards) and,
    unless ``vectors_out`` asks for them, the final vector update; unused parameters would break
    DistributedDataParallel and unused work would only cost time.
    """

    def __init__(self, hidden_channels: int, num_rbf: int, last: bool = False, vectors_out: bool = True) -> None:
        super().__init__()
        self.last = last
        self.vectors_out = vectors_out or not last
        self.scalar_to_local = GlobalScalarToLocal(hidden_channels)
        self.vector_to_local = GlobalVectorToLocal(hidden_channels)
        self.message = MessageBlock(hidden_channels, num_rbf)
        self.update = NodeUpdateBlock(hidden_channels)
        if not last:
            self.scalar_to_global = LocalScalarToGlobal(hidden_channels)
            self.vector_to_global = LocalVectorToGlobal(hidden_channels)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        u: torch.Tensor,
        g: torch.Tensor,
        batch: torch.Tensor,
        radial: RadialBands,
        unit_vec: torch.Tensor,
        edge_index: torch.Tensor,
        buffers: EdgeBuffers | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], u [B, F], g [B, 3, F]; returns them updated.

        ``buffers``: per-edge scratch memory and graph tables shared by the layers of one forward pass.
        """
        x = self.scalar_to_local(x, u, batch)
        v = self.vector_to_local(v, g, batch)
        x, v = self.message(x, v, radial, unit_vec, edge_index, buffers)
        x, v = self.update(x, v, update_vectors=self.vectors_out)
        if not self.last:
            u = self.scalar_to_global(x, u, batch)
            g = self.vector_to_global(v, g, batch)
        return x, v, u, g
