"""LEIGNN checkpoints of both hosts as one core potential: the names that stand for LEIGNN
(``names``), the host-free reader of fairchem 1.10 files (``format1``), the registry of formats a host
adds (``stored``: fairchem 2.x registers its inference checkpoint) and the one inference loader
(``potential.load_potential``), which the ASE calculator, MD, relaxations and benchmarks use.

Imports the core, graph, speed paths and the shared adapters; never a host framework.
"""

from __future__ import annotations

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.checkpoints.potential import LoadedPotential, load_potential, read_stored_model

__all__ = ["CheckpointError", "LoadedPotential", "load_potential", "read_stored_model"]
