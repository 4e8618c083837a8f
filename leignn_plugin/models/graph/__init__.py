"""Graph construction: neighbour search (fairchem's) and differentiable edge geometry (ours)."""

from __future__ import annotations

from leignn_plugin.models.graph.geometry import EdgeGeometry, apply_strain, edge_geometry
from leignn_plugin.models.graph.neighbors import NeighborGraph, neighbor_graph

__all__ = ["EdgeGeometry", "NeighborGraph", "apply_strain", "edge_geometry", "neighbor_graph"]
