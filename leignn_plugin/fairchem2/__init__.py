"""The fairchem 2.x host: LEIGNN's backbone and heads for ``HydraModel`` (``fairchem -c`` training,
``load_predict_unit``, ``FAIRChemCalculator``, LAMMPS through ``fairchem-lammps``), the 1.10 -> 2.x
checkpoint converter and the ``leignn-fairchem2`` command.

Importing it registers the short names in fairchem 2.x's registry, the inference checkpoint format
with ``leignn_plugin.checkpoints`` and with ``tools_host`` what the tools need from 2.x (its batches, its
LEIGNN ``HydraModel``, fairchem's eSCN-MD as the benchmarks' reference, its accuracy and graph-parallel benchmarks); configs and checkpoints use
the dotted paths (``leignn_plugin.fairchem2.models.LEIGNNBackbone``), which need no import beforehand.
"""

from __future__ import annotations

from leignn_plugin.fairchem2 import (
    accuracy,
    checkpoint,  # noqa: F401  (adds the 2.x format to the one checkpoint loader)
    graph_parallel_bench,
    harness,
)
from leignn_plugin.fairchem2.models import (
    REGISTERED_MODELS,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)
from leignn_plugin.tools_host import HostAccuracy, ToolsHost, register

register(ToolsHost(major=2, atoms_batch=harness.atoms_batch, potential=harness.potential,
                   leignn=harness.leignn_hydra, baselines={"escn-md": harness.esen_hydra},
                   accuracy=HostAccuracy(check=accuracy.check_options, run=accuracy.run,
                                         default_out=accuracy.default_out),
                   graph_parallel=graph_parallel_bench.run))

__all__ = [
    "REGISTERED_MODELS",
    "LEIGNNBackbone",
    "LEIGNNConservativeHead",
    "LEIGNNDirectForceHead",
    "LEIGNNEnergyHead",
]
