"""The fairchem 2.x host: LEIGNN's backbone and heads for ``HydraModel`` (``fairchem -c`` training,
``load_predict_unit``, ``FAIRChemCalculator``, LAMMPS through ``fairchem-lammps``), the 1.10 -> 2.x
checkpoint converter and the ``leignn-fairchem2`` command.

Importing it registers the short names in fairchem 2.x's registry and the inference checkpoint format
with ``leignn_plugin.checkpoints``; configs and checkpoints use the
dotted paths (``leignn_plugin.fairchem2.models.LEIGNNBackbone``), which need no import beforehand.
"""

from __future__ import annotations

from leignn_plugin.fairchem2 import checkpoint  # noqa: F401  (adds the 2.x format to the one checkpoint loader)
from leignn_plugin.fairchem2.models import (
    REGISTERED_MODELS,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

__all__ = [
    "REGISTERED_MODELS",
    "LEIGNNBackbone",
    "LEIGNNConservativeHead",
    "LEIGNNDirectForceHead",
    "LEIGNNEnergyHead",
]
