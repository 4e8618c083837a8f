"""The old dotted path of ``leignn`` and its hydra heads (see ``leignn_plugin.models``)."""

from __future__ import annotations

from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

__all__ = ["LEIGNN", "LEIGNNConservativeHead", "LEIGNNDirectForceHead", "LEIGNNEnergyHead"]
