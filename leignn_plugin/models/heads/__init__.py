"""Output heads: embeddings -> energy, direct forces, conservative forces and stress."""

from __future__ import annotations

from leignn_plugin.models.heads.direct_forces import DirectForceHead
from leignn_plugin.models.heads.energy import EnergyHead
from leignn_plugin.models.heads.gradient import conservative_forces_and_stress

__all__ = ["DirectForceHead", "EnergyHead", "conservative_forces_and_stress"]
