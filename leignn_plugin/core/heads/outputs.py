"""Energy, forces and stress of one forward pass, assembled from the representation's embeddings."""

from __future__ import annotations

import torch

from leignn_plugin.core.heads.direct_forces import DirectForceHead
from leignn_plugin.core.heads.energy import EnergyHead
from leignn_plugin.core.heads.gradient import conservative_forces_and_stress


def energy_forces_stress(
    emb: dict,
    energy_head: EnergyHead,
    force_head: DirectForceHead | None,
    regress_forces: bool,
    training: bool,
) -> dict[str, torch.Tensor]:
    """``energy`` [B]; with ``regress_forces`` also ``forces`` [N, 3], read off the node vectors by
    ``force_head`` or, without one, -dE/dpos (and ``stress`` [B, 3, 3] when the embeddings carry a strain).

    ``training``: keep the graph of the force derivative, so that a force loss can be backpropagated.
    """
    pos, share = emb["pos"], emb.get("share")
    num_graphs = emb["global_scalar"].shape[0]
    energy = energy_head(emb["node_scalar"], emb["batch"], num_graphs, pos.dtype)  # [B]
    out = {"energy": energy if share is None else share.total(energy)}
    if not regress_forces:
        return out
    if force_head is not None:
        out["forces"] = direct_forces(emb, force_head)  # [N, 3]
        return out
    # under graph parallelism each rank differentiates its own atoms' energy; the parts add up
    forces, stress = conservative_forces_and_stress(energy, pos, emb["displacement"], emb["cell"],
                                                    create_graph=training, periodic=emb.get("periodic"))
    out["forces"] = forces if share is None else share.total(forces)  # [N, 3]
    if stress is not None:
        out["stress"] = stress if share is None else share.total(stress)  # [B, 3, 3]
    return out


def direct_forces(emb: dict, force_head: DirectForceHead) -> torch.Tensor:
    """Forces [N, 3] read off the node vectors; under graph parallelism every rank's atoms gathered."""
    forces = force_head(emb["node_vector"], emb["pos"].dtype)  # [n_r, 3]
    share = emb.get("share")
    return forces if share is None else share.whole(forces)
