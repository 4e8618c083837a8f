"""The fairchem 1.10 host: registered model names, batch adapter, checkpoints, ``main.py`` and launches.

Importing it registers LEIGNN's names in fairchem's registry and fairchem's own neighbour search
as ``graph_method: fairchem``.
"""

from __future__ import annotations

from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)
from leignn_plugin.fairchem1.reference_graph import fairchem_batch
from leignn_plugin.graph import register_search

register_search("fairchem", fairchem_batch)

REGISTERED_MODELS = {
    "leignn": LEIGNN,
    "leignn_backbone": LEIGNNBackbone,
    "leignn_energy_head": LEIGNNEnergyHead,
    "leignn_force_head": LEIGNNDirectForceHead,
    "leignn_conservative_head": LEIGNNConservativeHead,
}

__all__ = [
    "LEIGNN",
    "REGISTERED_MODELS",
    "LEIGNNBackbone",
    "LEIGNNConservativeHead",
    "LEIGNNDirectForceHead",
    "LEIGNNEnergyHead",
]
