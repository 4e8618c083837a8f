"""The fairchem 1.10 host: registered model names, batch adapter, checkpoints, ``main.py`` and launches.

Importing it registers LEIGNN's names in fairchem's registry, fairchem's own neighbour search as
``graph_method: fairchem``, and with ``tools_host`` what the tools need from 1.10: its batches, its
LEIGNN, and the trainer evaluation of ``leignn-bench accuracy``.
"""

from __future__ import annotations

from leignn_plugin.fairchem1 import harness
from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)
from leignn_plugin.fairchem1.reference_graph import fairchem_batch
from leignn_plugin.graph import register_search
from leignn_plugin.tools_host import ToolsHost, register

register_search("fairchem", fairchem_batch)
register(ToolsHost(major=1, atoms_batch=harness.atoms_batch, potential=harness.potential, leignn=LEIGNN,
                   trainer_evaluation="leignn_plugin.fairchem1.trainer_evaluation"))

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
