"""The graph options every host's backbone takes besides the representation's, and their rules."""

from __future__ import annotations

from leignn_plugin.core.options import OptionError, Rule, boolean, is_number, one_of
from leignn_plugin.graph import check_method, graph_methods

GRAPH_OPTIONS: dict[str, Rule] = {
    "enforce_max_neighbors_strictly": boolean(),
    "graph_method": one_of(graph_methods),
    "speed_paths": boolean(),
    "min_distance": Rule("a distance >= 0 in Å (0 switches the check off)",
                         lambda v: is_number(v) and float(v) >= 0),
}
"""enforce_max_neighbors_strictly: cut ties at ``max_neighbors`` arbitrarily (fairchem's flag).
graph_method: the neighbour search (``vesin`` by default; hosts may register their own).
speed_paths: the speed paths of ``leignn_plugin.accel`` where they were measured faster.
min_distance: refuse structures with two atoms closer than this (Å); 0 switches the check off."""


def set_graph_options(backbone: object, enforce_max_neighbors_strictly: bool, graph_method: str,
                      speed_paths: bool, min_distance: float) -> None:
    """Check the graph options (values checked by the caller against ``GRAPH_OPTIONS`` before the
    representation is built) and set them on ``backbone``, whose ``cutoff`` bounds ``min_distance``
    (the close-atom check reads the graph's pairs)."""
    check_method(graph_method)
    if min_distance > backbone.cutoff:
        raise OptionError(f"min_distance ({min_distance:g} Å) must not exceed the cutoff ({backbone.cutoff:g} Å)")
    backbone.enforce_max_neighbors_strictly = enforce_max_neighbors_strictly
    backbone.graph_method = graph_method
    backbone.speed_paths = speed_paths
    backbone.min_distance = float(min_distance)
