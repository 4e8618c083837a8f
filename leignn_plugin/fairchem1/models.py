"""LEIGNN's names in fairchem 1.10's registry: the model ``leignn``, the hydra backbone
``leignn_backbone`` and the heads ``leignn_energy_head``, ``leignn_force_head`` and
``leignn_conservative_head``.

Thin adapters over the core (``leignn_plugin.core``): they read fairchem batches, search the graph
(``leignn_plugin.graph``) and switch the speed paths on for the device (``leignn_plugin.accel``);
the mathematics and the parameter names are the core's.
"""

from __future__ import annotations

import torch
from fairchem.core.common.registry import registry
from fairchem.core.models.base import BackboneInterface, GraphModelMixin, HeadInterface
from torch import nn

from leignn_plugin.adapters.batch import atom_graph
from leignn_plugin.adapters.heads import head_problem
from leignn_plugin.adapters.options import GRAPH_OPTIONS, set_graph_options
from leignn_plugin.adapters.speed import SpeedPathsFollowDevice
from leignn_plugin.core.heads import DirectForceHead, EnergyHead, energy_forces_stress
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.core.options import (
    OptionError,
    Rule,
    boolean,
    check_known,
    check_values,
)
from leignn_plugin.core.representation import LEIGNNRepresentation
from leignn_plugin.graph import DEFAULT_MIN_DISTANCE

BACKBONE_OPTIONS: dict[str, Rule] = {
    "use_pbc": boolean(),
    "use_pbc_single": boolean(),
    "otf_graph": boolean(),
    **GRAPH_OPTIONS,
}
"""The backbone's own options (besides the representation's) and what each accepts."""


@registry.register_model("leignn_backbone")
class LEIGNNBackbone(SpeedPathsFollowDevice, LEIGNNRepresentation, GraphModelMixin, BackboneInterface):
    """The LEIGNN representation on fairchem batches.

    Takes every option of :class:`~leignn_plugin.core.representation.LEIGNNRepresentation` and:

    Args:
        use_pbc: periodic boundary conditions (per axis from ``data.pbc`` when present).
        use_pbc_single: accepted so that fairchem-style model sections load; it changes nothing
            (fairchem uses it to search periodic graphs one structure at a time, which LEIGNN's
            search does anyway).
        otf_graph: build the graph on the fly instead of reading ``edge_index`` from the data.
        enforce_max_neighbors_strictly: cut ties at ``max_neighbors`` arbitrarily (fairchem's flag).
        graph_method: neighbour search: ``vesin`` (linear in atoms, the default), ``fairchem``
            (fairchem's all-pairs ``radius_graph_pbc``) or ``cell_list`` (the old name of the
            linear search, now vesin); all give the same edges.
        speed_paths: run the speed paths of ``leignn_plugin.accel`` where they were measured faster
            (False: the core's plain blocks everywhere; the numbers agree to rounding).
        min_distance: refuse a batch with two atoms closer than this many Å (one line naming the
            structure's sid/fid and the atoms; see ``leignn_plugin.graph.sanity`` for the default);
            0 switches the check off. Non-finite positions and atomic numbers outside
            1..num_elements are always refused.
    """

    def __init__(
        self,
        *,
        use_pbc: bool = True,
        use_pbc_single: bool = False,
        otf_graph: bool = True,
        enforce_max_neighbors_strictly: bool = False,
        graph_method: str = "vesin",
        speed_paths: bool = True,
        min_distance: float = DEFAULT_MIN_DISTANCE,
        **options,
    ) -> None:
        check_known(options, self.option_rules())
        given = locals()
        check_values({name: given[name] for name in BACKBONE_OPTIONS}, BACKBONE_OPTIONS)
        super().__init__(**options)
        self.use_pbc = use_pbc
        self.use_pbc_single = use_pbc_single
        self.otf_graph = otf_graph
        set_graph_options(self, enforce_max_neighbors_strictly, graph_method, speed_paths, min_distance)
        self.choose_speed_paths()

    @classmethod
    def option_rules(cls) -> dict[str, Rule]:
        """The representation's options and the backbone's own (graph search, periodicity, speed paths)."""
        return {**super().option_rules(), **BACKBONE_OPTIONS}

    def forward(self, data) -> dict[str, torch.Tensor | None]:
        graph = atom_graph(data, self.cutoff, self.max_neighbors, self.use_pbc, self.otf_graph,
                           self.enforce_max_neighbors_strictly, self.graph_method, self.min_distance,
                           self.num_elements)
        return super().forward(graph)


@registry.register_model("leignn")
class LEIGNN(LEIGNNPotential, GraphModelMixin):
    """LEIGNN with energy and (direct or conservative) forces: the drop-in for PaiNN-style configs.

    Takes the backbone's options (see :class:`LEIGNNBackbone`); outputs ``energy`` [B],
    ``forces`` [N, 3] and, in conservative mode with ``regress_stress``, ``stress`` [B, 3, 3].
    """

    representation_class = LEIGNNBackbone

    def __getattr__(self, name: str):
        """Graph options (cutoff, max_neighbors, use_pbc, ...) are the backbone's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "backbone":
                raise
            return getattr(self.backbone, name)

    def forward(self, data) -> dict[str, torch.Tensor]:
        """``data``: a fairchem batch (the backbone turns it into the core's AtomGraph)."""
        return super().forward(data)


HEAD_NAMES = {"energy": "leignn_energy_head", "forces": "leignn_force_head",
              "conservative": "leignn_conservative_head"}


class _LEIGNNHead(nn.Module, HeadInterface):
    """Shared base of the hydra heads: keeps the backbone's options."""

    role = "energy"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__()
        problem = self.backbone_problem(backbone.regress_forces, backbone.direct_forces)
        if problem:
            raise OptionError(problem)
        self.hidden_channels = backbone.hidden_channels
        self.regress_forces = backbone.regress_forces
        self.direct_forces = backbone.direct_forces

    @classmethod
    def backbone_problem(cls, regress_forces: bool, direct_forces: bool) -> str | None:
        """Why this head cannot sit on a backbone with these force options, or None (checked by the
        constructor and, before any work starts, by ``main.py``'s config check)."""
        return head_problem(cls.role, regress_forces, direct_forces, HEAD_NAMES)


@registry.register_model("leignn_energy_head")
class LEIGNNEnergyHead(_LEIGNNHead):
    """Hydra head with output ``energy`` [B]."""

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.energy_head = EnergyHead(self.hidden_channels)

    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        return energy_forces_stress(emb, self.energy_head, None, False, self.training)


@registry.register_model("leignn_force_head")
class LEIGNNDirectForceHead(_LEIGNNHead):
    """Hydra head with direct ``forces`` [N, 3] from node vectors (backbone with direct_forces)."""

    role = "forces"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.force_head = DirectForceHead(self.hidden_channels)


    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        return {"forces": self.force_head(emb["node_vector"], emb["pos"].dtype)}


@registry.register_model("leignn_conservative_head")
class LEIGNNConservativeHead(_LEIGNNHead):
    """Hydra head with ``energy``, ``forces`` = -dE/dpos and, with regress_stress, ``stress``.

    Use it with ``pass_through_head_outputs: true`` so its outputs keep their own names.
    """

    role = "conservative"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.energy_head = EnergyHead(self.hidden_channels)


    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            return energy_forces_stress(emb, self.energy_head, None, True, self.training)
