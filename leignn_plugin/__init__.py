"""leignn-plugin: the LEIGNN interatomic potential as a fairchem model.

Importing this package registers, in fairchem's registry, the model ``leignn``, the hydra backbone
``leignn_backbone`` and the heads ``leignn_energy_head``, ``leignn_force_head`` and
``leignn_conservative_head``.
"""

from __future__ import annotations

from leignn_plugin.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

__version__ = "0.1.0"

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
    "__version__",
]
