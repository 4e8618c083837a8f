"""Output heads: embeddings -> energy, direct forces, conservative forces and stress."""

from __future__ import annotations

from leignn_plugin.core.heads.direct_forces import DirectForceHead
from leignn_plugin.core.heads.energy import EnergyHead
from leignn_plugin.core.heads.gradient import conservative_forces_and_stress
from leignn_plugin.core.heads.outputs import direct_forces, energy_forces_stress

__all__ = ["DirectForceHead", "EnergyHead", "conservative_forces_and_stress", "direct_forces",
           "energy_forces_stress"]
