"""fairchem's own ``radius_graph_pbc`` as the graph method ``fairchem``: the reference search.

It compares every atom pair of a structure with every periodic image (O(N^2) memory) and assumes
wrapped positions and one periodicity per call, which ``graph.periodic`` provides. The model uses
vesin by default (the same edges, ``tests/test_graph.py``); this one stays for comparison and for
configs that name it.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from fairchem.core.common.utils import radius_graph_pbc

from leignn_plugin.graph.periodic import per_periodicity


def _one_pattern(pos: torch.Tensor, cell: torch.Tensor, pbc: list[bool], natoms: torch.Tensor, cutoff: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    search = SimpleNamespace(pos=pos.float(), cell=cell.float(), natoms=natoms)
    edge_index, offsets, _ = radius_graph_pbc(search, cutoff, 0, False, pbc=list(pbc))
    return edge_index, offsets


def fairchem_batch(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, natoms: torch.Tensor, cutoff: float
                   ) -> tuple[torch.Tensor, torch.Tensor, None]:
    """All pairs within ``cutoff`` by fairchem's search, per periodicity pattern, unwrapped offsets
    (their lengths are left to ``graph.search``)."""
    edge_index, offsets = per_periodicity(_one_pattern, pos.float(), cell.float(), pbc, natoms, cutoff)
    return edge_index, offsets, None
