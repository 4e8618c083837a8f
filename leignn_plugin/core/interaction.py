"""One LEIGNN layer: virtual node -> atoms, message, node update, atoms -> virtual node."""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.core.edges import EdgeSet
from leignn_plugin.core.global_scalar import GlobalScalarToLocal, LocalScalarToGlobal
from leignn_plugin.core.global_vector import GlobalVectorToLocal, LocalVectorToGlobal
from leignn_plugin.core.message import MessageBlock
from leignn_plugin.core.parallel import AtomShare
from leignn_plugin.core.update import node_update


class InteractionLayer(nn.Module):
    """The four steps of a LEIGNN layer, in the paper's order.

    ``last=True`` drops the atoms -> virtual node step (nothing reads the virtual node afterwards)
    and, unless ``vectors_out`` asks for them, the final vector update; unused parameters would
    break DistributedDataParallel and unused work would only cost time. ``virtual_node=False``
    drops both virtual-node steps (the paper's Vanilla and Vanilla + NMU ablations);
    ``node_update`` picks the update block (``nmu`` or ``painn``, see ``update.py``).
    """

    def __init__(self, hidden_channels: int, num_rbf: int, last: bool = False, vectors_out: bool = True,
                 virtual_node: bool = True, node_update_name: str = "nmu") -> None:
        super().__init__()
        self.last = last
        self.vectors_out = vectors_out or not last
        self.virtual_node = virtual_node
        if virtual_node:
            self.scalar_to_local = GlobalScalarToLocal(hidden_channels)
            self.vector_to_local = GlobalVectorToLocal(hidden_channels)
        self.message = MessageBlock(hidden_channels, num_rbf)
        self.update = node_update(node_update_name, hidden_channels)
        if virtual_node and not last:
            self.scalar_to_global = LocalScalarToGlobal(hidden_channels)
            self.vector_to_global = LocalVectorToGlobal(hidden_channels)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor,
        u: torch.Tensor,
        g: torch.Tensor,
        batch: torch.Tensor,
        edges: EdgeSet,
        share: AtomShare | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F], u [B, F], g [B, 3, F]; returns them updated.

        Under graph parallelism x, v and ``batch`` hold this rank's atoms only (``share``)."""
        if self.virtual_node:
            x = self.scalar_to_local(x, u, batch)
            v = self.vector_to_local(v, g, batch)
        x, v = self.message(x, v, edges, share)
        x, v = self.update(x, v, update_vectors=self.vectors_out)
        if self.virtual_node and not self.last:
            u = self.scalar_to_global(x, u, batch, share)
            g = self.vector_to_global(v, g, batch, share)
        return x, v, u, g
