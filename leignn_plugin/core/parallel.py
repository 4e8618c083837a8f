"""Graph parallelism: one structure's atoms shared by several ranks, every layer exact.

Each rank holds a contiguous share of the atoms (the first ``N mod W`` ranks one more, the rule of
``torch.tensor_split``), their node features and the edges that end on them; positions, the graph and the
virtual node are whole on every rank. Per layer, a LEIGNN needs two exchanges:

    phi(x_j), v_j of every neighbour j       gather of [N, 3F] and [N, 3, F] (sources may be anywhere)
    sum_{i in G} x_i, sum_{i in G} v_i       all-reduce of [B, F] and [B, 3, F] (the virtual node's means)

and its outputs one more: energies summed over ranks, direct forces gathered, and conservative forces and
the virial summed over ranks after each rank differentiates its own atoms' energy. The core only states
which collectives it needs (:class:`Collectives`); a host fills them with its framework's
(``leignn_plugin.fairchem2.graph_parallel`` with fairchem's ``gp_utils``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from leignn_plugin.core.scatter import segment_sum


class Collectives(Protocol):
    """What a graph-parallel LEIGNN asks of the ranks sharing one batch (``world_size`` of them)."""

    rank: int
    world_size: int

    def gather_atoms(self, local: torch.Tensor, num_atoms: int) -> torch.Tensor:
        """Every rank's [n_r, ...] rows in rank order, [N, ...]; in backward each rank receives the sum of
        all ranks' gradients for its own rows (every rank reads every row)."""

    def sum_shared(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``partial``, which every rank then reads; in backward the gradients are
        summed too (each rank's contribution reaches every rank's reader)."""

    def sum_parts(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of one result's parts (energies, forces); backward passes the gradient
        through (each rank differentiates only its own part)."""

    def gather_result(self, local: torch.Tensor, num_atoms: int) -> torch.Tensor:
        """Every rank's [n_r, ...] rows of a per-atom result, [N, ...]; backward keeps this rank's rows."""


def atom_share(num_atoms: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s atoms among ``num_atoms``, ``torch.tensor_split``'s rule."""
    base, extra = divmod(num_atoms, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass
class AtomShare:
    """This rank's atoms [start, stop) of a batch of ``num_atoms`` and the collectives that join the shares.

    counts: [B] atoms per structure over all ranks (the virtual node averages over all of them).
    """

    comm: Collectives
    start: int
    stop: int
    num_atoms: int
    counts: torch.Tensor

    @classmethod
    def of(cls, comm: Collectives, batch: torch.Tensor, num_graphs: int) -> AtomShare:
        """The share of ``comm.rank`` in a batch whose atoms belong to structures ``batch`` [N]."""
        num_atoms = batch.shape[0]
        if num_atoms < comm.world_size:
            raise ValueError(f"graph parallelism over {comm.world_size} ranks needs at least as many atoms; "
                             f"this batch has {num_atoms}")
        start, stop = atom_share(num_atoms, comm.world_size, comm.rank)
        counts = torch.bincount(batch, minlength=num_graphs)  # [B]
        return cls(comm=comm, start=start, stop=stop, num_atoms=num_atoms, counts=counts)

    def local(self, full: torch.Tensor) -> torch.Tensor:
        """The rows of this rank's atoms of a per-atom tensor [N, ...]."""
        return full[self.start:self.stop]

    def owns_target(self, edge_index: torch.Tensor) -> torch.Tensor:
        """[E] True for the edges j -> i whose target i is one of this rank's atoms."""
        target = edge_index[1]
        return (target >= self.start) & (target < self.stop)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """[n_r, ...] -> [N, ...]: every rank's rows (neighbour features)."""
        return self.comm.gather_atoms(local, self.num_atoms)

    def structure_mean(self, local: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """The mean over every rank's atoms of each structure, [B, ...], from this rank's rows [n_r, ...]."""
        total = self.comm.sum_shared(segment_sum(local, batch, self.counts.shape[0]))  # [B, ...]
        count = self.counts.clamp(min=1).to(local.dtype)  # [B]
        return total / count.view(-1, *([1] * (local.dim() - 1)))

    def total(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of each rank's part of a result (energies, conservative forces, stress)."""
        return self.comm.sum_parts(partial)

    def whole(self, local: torch.Tensor) -> torch.Tensor:
        """A per-atom result [n_r, ...] of this rank's atoms -> [N, ...] of all atoms (direct forces)."""
        return self.comm.gather_result(local, self.num_atoms)
