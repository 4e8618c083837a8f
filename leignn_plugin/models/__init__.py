"""LEIGNN models registered with fairchem's registry on import."""

from __future__ import annotations

from leignn_plugin.models.backbone import LEIGNNBackbone
from leignn_plugin.models.leignn import (
    LEIGNN,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

__all__ = ["LEIGNN", "LEIGNNBackbone", "LEIGNNConservativeHead", "LEIGNNDirectForceHead", "LEIGNNEnergyHead"]
