"""Neighbour search, in one place: used by the model adapters, the MD calculator and the benchmarks.

``neighbor_graph`` (a batch), ``VerletList`` (MD, with a skin), ``max_neighbors_mask`` (fairchem's
cap on neighbours), and the physical sanity checks of structures built on the search
(``check_structures``, ``CloseAtoms``, ``check_extent``: where atoms may be before any search). Plain torch and vesin; hosts may register further methods
(``register_search``).
"""

from __future__ import annotations

from leignn_plugin.graph.extent import check_extent
from leignn_plugin.graph.max_neighbors import max_neighbors_mask
from leignn_plugin.graph.sanity import (
    DEFAULT_MIN_DISTANCE,
    CloseAtoms,
    check_elements,
    check_finite,
    check_min_distance,
    check_structures,
)
from leignn_plugin.graph.search import (
    check_method,
    graph_methods,
    neighbor_graph,
    register_search,
    select_edges,
)
from leignn_plugin.graph.types import NeighborGraph
from leignn_plugin.graph.verlet import VerletList

__all__ = [
    "DEFAULT_MIN_DISTANCE",
    "CloseAtoms",
    "NeighborGraph",
    "VerletList",
    "check_elements",
    "check_extent",
    "check_finite",
    "check_method",
    "check_min_distance",
    "check_structures",
    "graph_methods",
    "max_neighbors_mask",
    "neighbor_graph",
    "register_search",
    "select_edges",
]
