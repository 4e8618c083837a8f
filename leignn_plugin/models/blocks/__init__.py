"""Building blocks of LEIGNN: radial features, activation, message, update and global blocks."""

from __future__ import annotations

from leignn_plugin.models.blocks.activation import ScaledSiLU
from leignn_plugin.models.blocks.global_scalar import GlobalScalarToLocal, LocalScalarToGlobal
from leignn_plugin.models.blocks.global_vector import GlobalVectorToLocal, LocalVectorToGlobal
from leignn_plugin.models.blocks.interaction import InteractionLayer
from leignn_plugin.models.blocks.message import MessageBlock
from leignn_plugin.models.blocks.radial import RadialEmbedding
from leignn_plugin.models.blocks.update import NodeUpdateBlock

__all__ = [
    "GlobalScalarToLocal",
    "GlobalVectorToLocal",
    "InteractionLayer",
    "LocalScalarToGlobal",
    "LocalVectorToGlobal",
    "MessageBlock",
    "NodeUpdateBlock",
    "RadialEmbedding",
    "ScaledSiLU",
]
