"""Where the registered classes lived before the core/adapter split, kept so that the dotted paths
stored in existing configs and checkpoints (``leignn_plugin.models.LEIGNN``,
``leignn_plugin.models.leignn.LEIGNN``, ``leignn_plugin.models.backbone.LEIGNNBackbone``) still
resolve. New code imports from ``leignn_plugin.fairchem1``.
"""

from __future__ import annotations

from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

__all__ = ["LEIGNN", "LEIGNNBackbone", "LEIGNNConservativeHead", "LEIGNNDirectForceHead", "LEIGNNEnergyHead"]
