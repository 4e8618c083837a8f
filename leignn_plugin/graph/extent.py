"""Where the atoms of a structure may be, checked before any neighbour search: a cell that is not
degenerate along its periodic axes, a structure of sensible size, and no more atoms in a volume than
``min_distance`` lets fit. A structure outside these gets one :class:`StructureError` line naming it
(and the atoms, where two or one are to blame) instead of reaching the search.

What the search (vesin 0.6) does without them, measured by feeding it growing distances and cells in a
child process: an atom 1e6 Å from the others along a non-periodic axis kills the process with SIGFPE
(vesin's cell grid collapses to no cells along an axis, from about 1e5 cutoffs on); in a slab, one
atom 1e4 Å above the surface makes a search take 0.5 s and 1e5 Å 25 s (vesin visits every cell along
a non-periodic axis from every cell, so the cost grows as (span / cutoff)^2); coordinates beyond about
1e10 Å along a periodic axis overflow vesin's 32-bit cell indices and lose pairs without a word; a
singular periodic cell is a traceback ("the box matrix is not invertible"); and a periodic cell 0.01 Å
wide holds 1e9 images of each atom within 6 Å: memory runs out and the process dies (SIGSEGV).
Periodic cells of 1e8 Å are searched normally.

The bounds and why:

- :data:`MAX_SPAN`, 1e4 Å (1 µm) along a direction that is not periodic. Atomistic structures are
  nanometres across: a million atoms of solid fill a 250 Å cube, a protein in a vacuum box spans a few
  hundred Å, and the largest atomistic simulations ever run (1e12 atoms) are periodic boxes a few µm
  wide. Atoms a micrometre apart where the structure is not periodic mean an atom has left it
  (evaporated or ejected in MD) or corrupt coordinates. It keeps vesin's cost bounded and far from its
  crash (1e4 Å is 1,700 cutoffs of 6 Å).
- :data:`MAX_COORDINATE`, 1e8 Å (1 cm), on every axis: a numerical bound. Beyond it float64 resolves a
  position to no better than 1e-8 Å, and vesin's cell indices approach their 32-bit end; unwrapped MD
  coordinates along periodic axes stay far below it.
- :data:`MIN_CELL_THICKNESS`, 0.2 Å between the faces of a periodic cell: no crystal repeats that
  often (the shortest bond, H2's, is 0.74 Å); such a cell is singular or mistyped.
- With ``min_distance`` d > 0: atoms that are all at least d apart (images included) are centres of
  disjoint balls of diameter d, so N of them need N * pi d^3 / 6 of room: the periodic cell, or the box
  around the atoms along non-periodic directions widened by d. A structure with less room must have
  two atoms closer than d; it is refused without the search, which would list about N^2 pairs (a cell
  and positions in nm read as Å: 4,000 Cu atoms in 47 Å^3 give 3e8 pairs at 6 Å).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from leignn_plugin.errors import StructureError
from leignn_plugin.graph.types import StructureNames, numbered

MAX_SPAN = 1e4  # Å, along a non-periodic direction; see the module docstring
MAX_COORDINATE = 1e8  # Å, any coordinate
MIN_CELL_THICKNESS = 0.2  # Å, between the faces of a periodic cell
AXES = "xyz"


def check_extent(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, natoms: torch.Tensor,
                 name: StructureNames = numbered, min_distance: float = 0.0,
                 setting: str = "min_distance") -> None:
    """Every structure of a batch within the bounds of the module docstring: positions [N, 3] (finite),
    cells [B, 3, 3] (finite), pbc [B, 3], natoms [B]. ``min_distance`` (Å, 0: off) and ``setting``
    (where the user sets it) are those of the close-atom check. Vectorised over the batch: it runs on
    every training batch."""
    points = pos.detach().to("cpu", torch.float64).numpy()  # [N, 3]
    cells = cell.detach().to("cpu", torch.float64).numpy().reshape(-1, 3, 3)  # [B, 3, 3]
    periodic = pbc.detach().cpu().numpy().reshape(-1, 3).astype(bool)  # [B, 3]
    counts = natoms.detach().cpu().numpy().reshape(-1).astype(np.int64)  # [B]
    starts = np.cumsum(counts) - counts  # [B]
    if points.size and float(np.abs(points).max()) > MAX_COORDINATE:
        atom, axis = np.argwhere(np.abs(points) > MAX_COORDINATE)[0]
        structure = int(np.searchsorted(np.cumsum(counts), atom, side="right"))
        raise StructureError(f"{name(structure)}: atom {int(atom - starts[structure])} is at "
                             f"{points[atom, axis]:.3g} Å along {AXES[axis]}; coordinates beyond "
                             f"{MAX_COORDINATE:g} Å (1 cm) are corrupt")
    measure = _check_thickness(cells, periodic, name)  # [B]
    present = counts > 0
    if not bool(present.any()):
        return
    k = periodic.sum(axis=1)  # [B]
    if bool(((k == 1) | (k == 2)).any()):  # slabs or wires: coordinates across their periodic vectors
        free = _free_directions(cells, periodic)  # [B, 3, 3]
        owner = np.repeat(np.arange(len(counts)), counts)  # [N]
        along = np.einsum("nj,nfj->nf", points, free[owner])  # [N, 3]
    else:  # molecules (free along x, y, z) and crystals (free along none): no projection needed
        free, along = np.broadcast_to(np.eye(3), cells.shape), points
    span = np.zeros((len(counts), 3))  # [B, 3]
    span[present] = (np.maximum.reduceat(along, starts[present], axis=0)
                     - np.minimum.reduceat(along, starts[present], axis=0))
    free_axes = np.arange(3) < (3 - k)[:, None]  # [B, 3]
    span = np.where(free_axes, span, 0.0)
    if bool((span > MAX_SPAN).any()):
        structure, f = (int(v) for v in np.argwhere(span > MAX_SPAN)[0])
        mine = along[starts[structure]:starts[structure] + counts[structure], f]
        a, b = sorted((int(mine.argmin()), int(mine.argmax())))
        raise StructureError(f"{name(structure)}: atoms {a} and {b} are {span[structure, f]:.3g} Å apart along "
                             f"{_direction(free[structure, f])}, which is not periodic; a structure spans at "
                             f"most {MAX_SPAN:g} Å (1 µm) where it is not periodic (did an atom leave it?)")
    if min_distance > 0:
        room = measure * np.prod(np.where(free_axes, span + min_distance, 1.0), axis=1)  # [B]
        crowded = counts * math.pi * min_distance**3 / 6 > room  # [B]
        if bool(crowded.any()):
            structure = int(np.argmax(crowded))
            where = "its periodic cell" if periodic[structure].all() else "the room its cell and atoms take"
            raise StructureError(f"{name(structure)}: {counts[structure]} atoms in {room[structure]:.3g} Å^3 "
                                 f"({where}) cannot all be {min_distance:g} Å apart, so some overlap (minimum "
                                 f"is {min_distance:g} Å, set by {setting})")


def check_cells(cell: torch.Tensor, pbc: torch.Tensor, name: StructureNames = numbered) -> None:
    """Cells [B, 3, 3] (finite) at least :data:`MIN_CELL_THICKNESS` thick across every axis pbc [B, 3]
    makes periodic: the part of :func:`check_extent` that needs no positions (a dataset record's cell)."""
    _check_thickness(cell.detach().to("cpu", torch.float64).numpy().reshape(-1, 3, 3),
                     pbc.detach().cpu().numpy().reshape(-1, 3).astype(bool), name)


def _check_thickness(cells: np.ndarray, periodic: np.ndarray, name: StructureNames) -> np.ndarray:
    """Refuse a cell thinner than :data:`MIN_CELL_THICKNESS` across a periodic axis; returns the measure
    of each periodic cell [B] (see :func:`_periodic_cells`)."""
    thickness, measure = _periodic_cells(cells, periodic)  # [B, 3], [B]
    thinnest = thickness.min(axis=1)  # [B]
    if bool((thinnest < MIN_CELL_THICKNESS).any()):
        structure = int(np.argmax(thinnest < MIN_CELL_THICKNESS))
        axis = int(np.argmin(thickness[structure]))
        raise StructureError(f"{name(structure)}: periodic along axis {axis} but the cell is degenerate in "
                             f"that direction ({thinnest[structure]:.3g} Å between its faces; a periodic cell "
                             f"needs at least {MIN_CELL_THICKNESS:g} Å)")
    return measure


def _periodic_cells(cells: np.ndarray, periodic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per structure, the distance between the cell's faces across each periodic axis [B, 3] (inf along
    the others; a vector's own length where its face is degenerate), and the measure of the periodic
    cell [B] (length, area or volume of its k periodic vectors; 1 for none). cells [B, 3, 3], periodic [B, 3]."""
    rows = np.where(periodic[:, :, None], cells, 0.0)  # [B, 3, 3], the periodic lattice vectors
    lengths = np.sqrt((rows * rows).sum(axis=2))  # [B, 3]
    k = periodic.sum(axis=1)  # [B]
    across = _cross(rows[:, [1, 2, 0]], rows[:, [2, 0, 1]])  # [B, 3, 3]: b x c, c x a, a x b
    pair = np.sqrt((across * across).sum(axis=2))  # [B, 3]
    volume = np.abs((rows[:, 0] * across[:, 0]).sum(axis=1))  # [B]
    # the periodic cell's measure: the norm of the wedge product of its k periodic vectors
    measure = np.where(k == 3, volume, np.where(k == 2, pair.sum(axis=1), np.where(k == 1, lengths.sum(axis=1),
                                                                                     1.0)))  # [B]
    # the face across axis d is spanned by the other periodic vectors (its measure: a pair's, a length, or 1)
    face = np.where(k[:, None] == 3, pair, np.where(k[:, None] == 2, lengths.sum(axis=1, keepdims=True) - lengths,
                                                    1.0))  # [B, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        thickness = np.where(face > 0, measure[:, None] / face, lengths)  # [B, 3]
    return np.where(periodic, thickness, np.inf), measure


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products along the last axis (numpy's ``cross`` costs more than the arithmetic here)."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def _free_directions(cells: np.ndarray, periodic: np.ndarray) -> np.ndarray:
    """Per structure, orthonormal directions normal to its periodic lattice vectors in the first 3 - k
    rows, zeros after [B, 3, 3]: x, y, z for a molecule, the surface normal for a slab, two directions
    across a wire, none for a crystal. Each points along its nearest Cartesian axis."""
    k = periodic.sum(axis=1)  # [B]
    free = np.zeros_like(cells)  # [B, 3, 3]
    free[k == 0] = np.eye(3)
    order = np.argsort(~periodic, axis=1, kind="stable")  # [B, 3], periodic axes first
    first = np.take_along_axis(cells, order[:, :1, None].repeat(3, axis=2), axis=1)[:, 0]  # [B, 3]
    second = np.take_along_axis(cells, order[:, 1:2, None].repeat(3, axis=2), axis=1)[:, 0]  # [B, 3]
    if bool((k == 2).any()):
        normal = _cross(first[k == 2], second[k == 2])  # [b, 3]
        free[k == 2, 0] = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    if bool((k == 1).any()):
        axis = first[k == 1] / np.linalg.norm(first[k == 1], axis=1, keepdims=True)  # [b, 3]
        helper = np.where(np.abs(axis[:, :1]) > 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])  # [b, 3]
        u = _cross(axis, helper)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        free[k == 1, 0], free[k == 1, 1] = u, _cross(axis, u)
    nearest = np.take_along_axis(free, np.abs(free).argmax(axis=2)[:, :, None], axis=2)  # [B, 3, 1]
    return np.where(nearest < 0, -free, free)


def _direction(direction: np.ndarray) -> str:
    """``z`` for a Cartesian axis, else the unit vector."""
    axis = int(np.argmax(np.abs(direction)))
    if abs(direction[axis]) > 1 - 1e-9:
        return AXES[axis]
    return "(" + ", ".join(f"{v:.2f}" for v in direction) + ")"
