"""Physical sanity of structures where they enter: data conversion, the calculator (and so MD) and
every batch the fairchem adapter sees.

A potential asked about atoms on top of each other, non-finite coordinates or an element it has no
embedding for still returns numbers or fails far from the cause (the graph drops pairs closer than
0.01 Å as an atom paired with itself, so two coincident atoms give a finite energy). Each check here
raises :class:`~leignn_plugin.errors.StructureError` with one line that names the structure (a caller's
label such as ``run.xyz: frame 3``) and the atoms, indexed within their structure.

Close pairs are found by the project's one neighbour search (vesin, periodic images included):
:func:`check_structures` searches at 2 Å or ``min_distance`` (a few pairs per atom, cheap), and
:func:`check_pairs` reuses the pairs and squared lengths a graph search at the model's cutoff has
already computed, which costs one comparison per edge on the hot path. Before either search,
:func:`~leignn_plugin.graph.extent.check_extent` refuses what no search should be given (atoms a
micrometre apart where the structure is not periodic, degenerate cells, more atoms than fit).

``DEFAULT_MIN_DISTANCE`` = 0.3 Å: the shortest bond there is, H2's, is 0.74 Å, and hot MD or compressed
hydrogen stay above about 0.5 Å; two protons 0.3 Å apart repel each other by 48 eV (14.4 eV Å / r), far
beyond any configuration a training set samples, while 0.3 Å is still 30 times the 0.01 Å below which
the graph silently drops a pair. Data made on purpose below it (dimer scans of the repulsive wall) set
the threshold lower; 0 switches the check off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leignn_plugin.errors import StructureError
from leignn_plugin.graph.extent import check_extent
from leignn_plugin.graph.types import StructureNames, numbered
from leignn_plugin.graph.vesin_search import structure_pairs

DEFAULT_MIN_DISTANCE = 0.3  # Å; see the module docstring for why
# Searches for close atoms run at no less than this (Å): a cell list binned much finer spends far longer
# allocating cells for a slab with vacuum than searching (benchmarks/README.md, "Neighbour lists"), and
# 2 Å holds only a few bonds per atom.
CLOSE_SEARCH_CUTOFF = 2.0
KNOWN_ELEMENTS = 118

@dataclass(frozen=True)
class CloseAtoms:
    """The close-atom check a graph search applies to its pairs (``neighbor_graph``, ``VerletList``):
    atoms closer than ``min_distance`` (Å, > 0) raise; ``name`` labels a structure by its batch index and
    ``setting`` tells the user where ``min_distance`` is set."""

    min_distance: float = DEFAULT_MIN_DISTANCE
    name: StructureNames = numbered
    setting: str = "min_distance"

    def check(self, edge_index: torch.Tensor, offsets: torch.Tensor, dist_sq: torch.Tensor,
              batch: torch.Tensor) -> None:
        """:func:`check_pairs` on a search's pairs (edge_index [2, E], offsets [E, 3], dist_sq [E], batch [N])."""
        check_pairs(edge_index, offsets, dist_sq, batch, self.min_distance, self.name, self.setting)


def check_min_distance(min_distance: float, setting: str = "min_distance") -> float:
    """``min_distance`` as a float, refused when negative or not finite (0 switches the check off)."""
    value = float(min_distance)
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"{setting} must be a distance >= 0 Å (0 switches the close-atom check off), got {min_distance}")
    return value


def locate(atom: int, natoms: torch.Tensor) -> tuple[int, int]:
    """The structure of atom ``atom`` of a batch with ``natoms`` [B] atoms each, and its index within it."""
    ends = torch.cumsum(natoms.view(-1).long().cpu(), 0)  # [B]
    structure = int(torch.searchsorted(ends, torch.tensor(atom), right=True))
    first = int(ends[structure - 1]) if structure > 0 else 0
    return structure, atom - first


def check_finite(pos: torch.Tensor, cell: torch.Tensor, natoms: torch.Tensor,
                 name: StructureNames = numbered) -> None:
    """Positions [N, 3] and cells [B, 3, 3] must be finite; names the first atom or cell that is not."""
    if not bool(torch.isfinite(pos).all()):
        atom = int(torch.nonzero(~torch.isfinite(pos).all(dim=1))[0])
        structure, local = locate(atom, natoms)
        raise StructureError(f"{name(structure)}: positions contain NaN or inf (atom {local})")
    if not bool(torch.isfinite(cell).all()):
        structure = int(torch.nonzero(~torch.isfinite(cell.view(-1, 9)).all(dim=1))[0])
        raise StructureError(f"{name(structure)}: cell contains NaN or inf")


def check_elements(numbers: torch.Tensor, natoms: torch.Tensor, max_element: int = KNOWN_ELEMENTS,
                   name: StructureNames = numbered, limit: str = "the known elements") -> None:
    """Atomic numbers [N] must lie in 1..``max_element`` (``limit`` says whose bound it is)."""
    numbers = numbers.view(-1)
    if numbers.numel() == 0 or (int(numbers.min()) >= 1 and int(numbers.max()) <= max_element):
        return
    atom = int(torch.nonzero((numbers < 1) | (numbers > max_element))[0])
    z = int(numbers[atom])
    structure, local = locate(atom, natoms)
    what = " (X, a dummy atom)" if z == 0 else ""
    raise StructureError(f"{name(structure)}: atom {local} has atomic number {z}{what}; "
                         f"only 1..{max_element} are allowed ({limit})")


def check_pairs(edge_index: torch.Tensor, offsets: torch.Tensor, dist_sq: torch.Tensor, batch: torch.Tensor,
                min_distance: float, name: StructureNames = numbered, setting: str = "min_distance") -> None:
    """No pair of a search (edge_index [2, E] as (j, i), offsets [E, 3], squared lengths [E]; batch [N]: the
    structure of each atom) closer than ``min_distance``; an atom with itself at offset 0 (fairchem's
    search lists it) does not count. Costs one comparison per pair when nothing is close."""
    if min_distance <= 0.0 or dist_sq.numel() == 0:
        return
    close = dist_sq < min_distance * min_distance  # [E]
    if not bool(close.any()):
        return
    candidates = torch.nonzero(close).view(-1)  # [C]
    j, i, shift = edge_index[0, candidates], edge_index[1, candidates], offsets[candidates]
    real = (i != j) | (shift != 0).any(dim=1)  # [C]
    if not bool(real.any()):
        return
    candidates = candidates[real]
    closest = int(candidates[torch.argmin(dist_sq[candidates])])
    raise close_pair_error(int(edge_index[1, closest]), int(edge_index[0, closest]),
                           bool((offsets[closest] != 0).any()), float(dist_sq[closest]) ** 0.5, batch,
                           min_distance, name, setting)


def close_pair_error(atom_a: int, atom_b: int, periodic: bool, distance: float, batch: torch.Tensor,
                     min_distance: float, name: StructureNames, setting: str) -> StructureError:
    """The one line for two atoms (batch indices; batch [N]: their structures) ``distance`` Å apart
    (``periodic``: one of them through a periodic image)."""
    structure = int(batch[atom_a])
    start = int(torch.nonzero(batch == structure)[0])  # the structure's first atom
    first, second = min(atom_a, atom_b) - start, max(atom_a, atom_b) - start
    limit = f"minimum is {min_distance:g} Å, set by {setting}"
    if atom_a == atom_b:
        return StructureError(f"{name(structure)}: atom {first} overlaps its own periodic image "
                              f"({distance:.3f} Å apart: the cell is too small; {limit})")
    across = " across the periodic boundary" if periodic else ""
    return StructureError(f"{name(structure)}: atoms {first} and {second} overlap "
                          f"({distance:.3f} Å apart{across}; {limit})")


def check_close_atoms(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, natoms: torch.Tensor,
                      min_distance: float, name: StructureNames = numbered,
                      setting: str = "min_distance") -> None:
    """No two atoms (or an atom and a periodic image) closer than ``min_distance``, by a search at that
    distance (at least :data:`CLOSE_SEARCH_CUTOFF`): pos [N, 3] as given, cell [B, 3, 3], pbc [B, 3],
    natoms [B]."""
    if min_distance <= 0.0:
        return
    cell, pbc = cell.view(-1, 3, 3), pbc.view(-1, 3).bool()
    first = 0
    for structure, count in enumerate(natoms.view(-1).tolist()):
        i, j, shifts, dist_sq = structure_pairs(pos[first:first + count], cell[structure],
                                                pbc[structure].tolist(), max(min_distance, CLOSE_SEARCH_CUTOFF))
        batch = torch.zeros(count, dtype=torch.long, device=pos.device)  # [n], one structure
        check_pairs(torch.stack([j, i]), shifts, dist_sq, batch, min_distance, lambda _, s=structure: name(s),
                    setting)
        first += count


def check_structures(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, natoms: torch.Tensor,
                     numbers: torch.Tensor, *, min_distance: float = DEFAULT_MIN_DISTANCE,
                     max_element: int = KNOWN_ELEMENTS, name: StructureNames = numbered,
                     setting: str = "min_distance", limit: str = "the known elements") -> None:
    """Every check on a batch of plain tensors: finite positions [N, 3] and cells [B, 3, 3], atomic
    numbers [N] in 1..``max_element``, atoms where a search can take them (``extent.check_extent``), no
    atoms closer than ``min_distance`` (pbc [B, 3], natoms [B]).

    ``name`` labels a structure by its index, ``setting`` names how the user changes ``min_distance``
    and ``limit`` whose bound ``max_element`` is; all three only shape the message.
    """
    pos = torch.as_tensor(pos).detach()
    cell = torch.as_tensor(cell).detach().view(-1, 3, 3)
    natoms = torch.as_tensor(natoms).view(-1).long()
    check_finite(pos, cell, natoms, name)
    check_elements(torch.as_tensor(numbers).long(), natoms, max_element, name, limit)
    pbc = torch.as_tensor(pbc)
    check_extent(pos, cell, pbc, natoms, name, min_distance, setting)
    check_close_atoms(pos, cell, pbc, natoms, min_distance, name, setting)
