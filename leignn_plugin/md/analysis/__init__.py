"""MD analyses in plain numpy: g(r), h(r), stability time, MSD and diffusivity, NVE energy drift."""

from __future__ import annotations

from leignn_plugin.md.analysis.distances import distance_distribution, pair_distances
from leignn_plugin.md.analysis.energy_drift import energy_drift
from leignn_plugin.md.analysis.msd import diffusion, msd_all_origins
from leignn_plugin.md.analysis.rdf import radial_distribution
from leignn_plugin.md.analysis.stability import stability_time

__all__ = [
    "diffusion",
    "distance_distribution",
    "energy_drift",
    "msd_all_origins",
    "pair_distances",
    "radial_distribution",
    "stability_time",
]
