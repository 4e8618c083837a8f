"""Graph-parallel LEIGNN on fairchem 2.x: the core's collectives (``core.parallel``) from ``gp_utils``.

When fairchem has set up its graph-parallel group (``gp_utils.setup_graph_parallel_groups``, as its
``ParallelMLIPPredictUnit`` workers and ``fairchem -c`` runs with ``gp_gpus`` do), every rank of the group
gets the whole batch and :class:`~leignn_plugin.fairchem2.models.LEIGNNBackbone` computes its share of the
atoms, exchanging neighbour features with fairchem's all-gather and the virtual node's sums with its
all-reduce. Atoms are split by index (fairchem's ``index_split``); LEIGNN exchanges every layer's features
with the all-gather whatever ``GraphParallelConfig.mode`` says (its all-to-all context is built for
eSCN-MD's layers).
"""

from __future__ import annotations

import torch
from fairchem.core.common import gp_utils

from leignn_plugin.core.parallel import Collectives


class FairchemCollectives:
    """:class:`~leignn_plugin.core.parallel.Collectives` over fairchem's graph-parallel group."""

    def __init__(self) -> None:
        self.rank = gp_utils.get_gp_rank()
        self.world_size = gp_utils.get_gp_world_size()

    def gather_atoms(self, local: torch.Tensor, num_atoms: int) -> torch.Tensor:
        return gp_utils.gather_from_model_parallel_region_sum_grad(local, num_atoms)

    def sum_shared(self, partial: torch.Tensor) -> torch.Tensor:
        return gp_utils.all_reduce_sum_with_grad(partial)

    def sum_parts(self, partial: torch.Tensor) -> torch.Tensor:
        return gp_utils.reduce_from_model_parallel_region(partial)

    def gather_result(self, local: torch.Tensor, num_atoms: int) -> torch.Tensor:
        return gp_utils.gather_from_model_parallel_region(local, num_atoms)


def active_collectives() -> Collectives | None:
    """The collectives of fairchem's graph-parallel group when one is set up with more than one rank."""
    if not gp_utils.initialized() or gp_utils.get_gp_world_size() < 2:
        return None
    return FairchemCollectives()
