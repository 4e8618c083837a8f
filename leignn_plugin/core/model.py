"""LEIGNN as one potential: the representation and its energy and force heads over an AtomGraph."""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.core.heads import DirectForceHead, EnergyHead, energy_forces_stress
from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.core.options import check_known
from leignn_plugin.core.representation import LEIGNNRepresentation


class LEIGNNPotential(nn.Module):
    """``backbone`` (the representation), ``energy_head`` and, for direct forces, ``force_head``.

    Takes the representation's options; returns ``energy`` [B], ``forces`` [N, 3] and, in
    conservative mode with ``regress_stress``, ``stress`` [B, 3, 3]. Host adapters subclass it and
    set ``representation_class`` to their own subclass of the representation, so the parameter
    names (``backbone.*``, ``energy_head.*``, ``force_head.*``) are the same in every host.
    """

    representation_class: type[LEIGNNRepresentation] = LEIGNNRepresentation

    def __init__(self, **options) -> None:
        check_known(options, self.representation_class.option_rules())
        super().__init__()
        self.backbone = self.representation_class(**options)
        f = self.backbone.hidden_channels
        self.energy_head = EnergyHead(f)
        self.force_head = (
            DirectForceHead(f) if self.backbone.regress_forces and self.backbone.direct_forces else None
        )

    def outputs(self, emb: dict) -> dict[str, torch.Tensor]:
        """The heads' outputs from the backbone's embeddings."""
        return energy_forces_stress(emb, self.energy_head, self.force_head, self.backbone.regress_forces,
                                    self.training)

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        grad_wanted = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad_wanted or self.backbone.conservative):
            out = self.outputs(self.backbone(graph))
        # without autograd (inference) the caller gets plain tensors
        return out if grad_wanted else {k: t.detach() for k, t in out.items()}
