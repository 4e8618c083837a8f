"""A host's batch as the core's :class:`AtomGraph`: anything with the fields fairchem's batches have
(``pos``, ``atomic_numbers``, ``natoms`` and, when present, ``batch``, ``cell``, ``pbc``, ``sid``,
``fid``, ``edge_index``, ``cell_offsets``): fairchem 1.x's torch_geometric batches and 2.x's ``AtomicData``."""

from __future__ import annotations

import torch

from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.graph import CloseAtoms, NeighborGraph, check_elements, check_finite, neighbor_graph

MIN_DISTANCE_SETTING = "the model option min_distance"


def _per_structure(value, index: int) -> str | None:
    """Entry ``index`` of a collated per-structure field (tensor or list), as text."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return str(value.view(-1)[index].item()) if value.numel() > index else None
    return str(value[index]) if len(value) > index else None


def batch_names(data):
    """How errors name structure ``index`` of a fairchem batch: by its ``sid`` and ``fid`` when stored."""

    def name(index: int) -> str:
        ids = [f"{key} {value}" for key in ("sid", "fid")
               if (value := _per_structure(getattr(data, key, None), index)) not in (None, "")]
        return f"structure {index} of the batch" + (f" ({', '.join(ids)})" if ids else "")

    return name


def structure_cells(data, num_graphs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The cells of a batch as [B, 3, 3]; zeros for data without a cell (molecules)."""
    cell = getattr(data, "cell", None)
    if cell is None:
        return torch.zeros((num_graphs, 3, 3), dtype=dtype, device=device)
    return cell.view(-1, 3, 3).to(dtype)


def structure_pbc(data, num_graphs: int, use_pbc: bool, device: torch.device) -> torch.Tensor:
    """Per-structure, per-axis periodicity [B, 3] (from ``data.pbc``, all True when absent)."""
    if not use_pbc:
        return torch.zeros((num_graphs, 3), dtype=torch.bool, device=device)
    pbc = getattr(data, "pbc", None)
    if pbc is None:
        return torch.ones((num_graphs, 3), dtype=torch.bool, device=device)
    return torch.as_tensor(pbc, device=device).bool().view(-1, 3).expand(num_graphs, 3)


def atom_graph(data, cutoff: float, max_neighbors: int, use_pbc: bool, otf_graph: bool, strict: bool,
               method: str, min_distance: float = 0.0, num_elements: int | None = None,
               pbc: torch.Tensor | None = None) -> AtomGraph:
    """The core's input for a fairchem batch: its edges searched on the fly (``otf_graph``) or read
    from ``edge_index``/``cell_offsets`` as stored in the data (``otf_graph: false``).

    Every batch is checked on the way (``leignn_plugin.graph.sanity``; a ``StructureError`` names the
    structure by sid/fid and the atoms): finite positions and cells, atomic numbers in 1..``num_elements``
    (when given) and, for graphs searched here, no two atoms closer than ``min_distance`` (> 0), read off
    the pair lengths the search computes anyway. ``pbc`` [B, 3]: the host's periodicity, instead of
    reading ``data.pbc``.
    """
    pos = data.pos  # [N, 3]
    natoms = data.natoms.view(-1)  # [B]
    num_graphs = natoms.numel()
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.repeat_interleave(torch.arange(num_graphs, device=pos.device), natoms)  # [N]
    cell = structure_cells(data, num_graphs, pos.dtype, pos.device)  # [B, 3, 3]
    if pbc is None:
        pbc = structure_pbc(data, num_graphs, use_pbc, pos.device)  # [B, 3]
    numbers = data.atomic_numbers.long()  # [N]
    name = batch_names(data)
    check_finite(pos.detach(), cell.detach(), natoms, name)
    if num_elements is not None:
        check_elements(numbers, natoms, num_elements, name, "the model's num_elements")
    close = CloseAtoms(min_distance, name, MIN_DISTANCE_SETTING) if min_distance > 0 else None
    stored = getattr(data, "edge_index", None)
    if not otf_graph and stored is not None:
        offsets = getattr(data, "cell_offsets", None) if use_pbc else None
        if offsets is None:
            offsets = torch.zeros((stored.shape[1], 3), dtype=pos.dtype, device=pos.device)
        graph = NeighborGraph(edge_index=stored.long(), cell_offsets=offsets)
    else:
        graph = neighbor_graph(pos, cell, pbc, natoms, cutoff, max_neighbors, strict, method, close, name)
    return AtomGraph(numbers=numbers, pos=pos, cell=cell, pbc=pbc, batch=batch,
                     edge_index=graph.edge_index, cell_offsets=graph.cell_offsets)
