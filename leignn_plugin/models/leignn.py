"""LEIGNN as one fairchem model (``leignn``) and as backbone + heads for fairchem's ``hydra``."""

from __future__ import annotations

import torch
from fairchem.core.common.registry import registry
from fairchem.core.models.base import GraphModelMixin, HeadInterface
from torch import nn

from leignn_plugin.models.backbone import LEIGNNBackbone
from leignn_plugin.models.heads import DirectForceHead, EnergyHead, conservative_forces_and_stress


def energy_forces_stress(
    backbone: LEIGNNBackbone,
    emb: dict,
    energy_head: EnergyHead,
    force_head: DirectForceHead | None,
    training: bool,
) -> dict[str, torch.Tensor]:
    """Assemble the outputs of one forward pass from the backbone's embeddings."""
    pos = emb["pos"]
    num_graphs = emb["global_scalar"].shape[0]
    energy = energy_head(emb["node_scalar"], emb["batch"], num_graphs, pos.dtype)  # [B]
    out = {"energy": energy}
    if not backbone.regress_forces:
        return out
    if force_head is not None:
        out["forces"] = force_head(emb["node_vector"], pos.dtype)  # [N, 3]
        return out
    forces, stress = conservative_forces_and_stress(
        energy, pos, emb["displacement"], emb["cell"], create_graph=training
    )
    out["forces"] = forces  # [N, 3]
    if stress is not None:
        out["stress"] = stress  # [B, 3, 3]
    return out


@registry.register_model("leignn")
class LEIGNN(nn.Module, GraphModelMixin):
    """LEIGNN with energy and (direct or conservative) forces: the drop-in for PaiNN-style configs.

    Takes the backbone's options (see :class:`LEIGNNBackbone`); outputs ``energy`` [B],
    ``forces`` [N, 3] and, in conservative mode with ``regress_stress``, ``stress`` [B, 3, 3].
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.backbone = LEIGNNBackbone(**kwargs)
        f = self.backbone.hidden_channels
        self.energy_head = EnergyHead(f)
        self.force_head = (
            DirectForceHead(f) if self.backbone.regress_forces and self.backbone.direct_forces else None
        )

    def __getattr__(self, name: str):
        """Graph options (cutoff, max_neighbors, use_pbc, ...) are the backbone's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "backbone":
                raise
            return getattr(self.backbone, name)

    def forward(self, data) -> dict[str, torch.Tensor]:
        grad_wanted = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad_wanted or self.backbone.conservative):
            emb = self.backbone(data)
            out = energy_forces_stress(self.backbone, emb, self.energy_head, self.force_head, self.training)
        # Under no_grad (validate, predict, relaxations) the caller gets plain tensors.
        return out if grad_wanted else {k: t.detach() for k, t in out.items()}


class _LEIGNNHead(nn.Module, HeadInterface):
    """Shared base of the hydra heads: keeps a reference to the backbone's options."""

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__()
        self.hidden_channels = backbone.hidden_channels
        self.regress_forces = backbone.regress_forces
        self.direct_forces = backbone.direct_forces


@registry.register_model("leignn_energy_head")
class LEIGNNEnergyHead(_LEIGNNHead):
    """Hydra head with output ``energy`` [B]."""

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.energy_head = EnergyHead(self.hidden_channels)

    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        num_graphs = emb["global_scalar"].shape[0]
        return {"energy": self.energy_head(emb["node_scalar"], emb["batch"], num_graphs, emb["pos"].dtype)}


@registry.register_model("leignn_force_head")
class LEIGNNDirectForceHead(_LEIGNNHead):
    """Hydra head with direct ``forces`` [N, 3] from node vectors (backbone with direct_forces)."""

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        if not backbone.direct_forces:
            raise ValueError("leignn_force_head needs a backbone with direct_forces: true; "
                             "use leignn_conservative_head for gradient forces")
        self.force_head = DirectForceHead(self.hidden_channels)

    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        return {"forces": self.force_head(emb["node_vector"], emb["pos"].dtype)}


@registry.register_model("leignn_conservative_head")
class LEIGNNConservativeHead(_LEIGNNHead):
    """Hydra head with ``energy``, ``forces`` = -dE/dpos and, with regress_stress, ``stress``.

    Use it with ``pass_through_head_outputs: true`` so its outputs keep their own names.
    """

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        if backbone.direct_forces or not backbone.regress_forces:
            raise ValueError("leignn_conservative_head needs a backbone with regress_forces: true "
                             "and direct_forces: false")
        self.backbone_ref = [backbone]  # a plain list: not a submodule, so no parameters twice
        self.energy_head = EnergyHead(self.hidden_channels)

    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            return energy_forces_stress(self.backbone_ref[0], emb, self.energy_head, None, self.training)
