"""The LEIGNN representation: atoms and a per-structure virtual node, scalars and vectors.

Returns a dict of named embeddings; heads (``heads/``) turn them into energy, forces and stress.
"""

from __future__ import annotations

import math

import torch
from fairchem.core.common.registry import registry
from fairchem.core.models.base import BackboneInterface, GraphModelMixin
from torch import nn

from leignn_plugin.models.blocks.activation import reset_linear_layers
from leignn_plugin.models.blocks.edge_buffers import EdgeBuffers
from leignn_plugin.models.blocks.interaction import InteractionLayer
from leignn_plugin.models.blocks.radial import RadialEmbedding
from leignn_plugin.models.blocks.radial_bands import RadialBands, radial_bands
from leignn_plugin.models.graph import apply_strain, edge_geometry, neighbor_graph
from leignn_plugin.models.graph.neighbors import GRAPH_METHODS, periodic_flags, structure_cells


@registry.register_model("leignn_backbone")
class LEIGNNBackbone(nn.Module, GraphModelMixin, BackboneInterface):
    """Lightweight equivariant interaction graph network (Yang et al., arXiv 2311.02869).

    Args:
        hidden_channels: F, the width of scalar and vector features.
        num_layers: T, the number of interaction layers.
        num_rbf: number of radial basis functions.
        cutoff: neighbour cutoff in Å.
        max_neighbors: at most this many neighbours per atom (fairchem's rule for ties).
        rbf: radial basis, ``gaussian`` | ``spherical_bessel`` | ``bernstein``.
        envelope: cutoff envelope, ``polynomial`` | ``exponential``.
        envelope_exponent: exponent p of the polynomial envelope.
        num_elements: atomic numbers 1..num_elements are accepted.
        regress_forces: whether forces are wanted at all.
        direct_forces: forces from node vectors (True) or -dE/dpos (False, conservative).
        regress_stress: with conservative forces, also the virial stress of periodic cells.
        use_pbc: periodic boundary conditions (per axis from ``data.pbc`` when present).
        otf_graph: build the graph on the fly instead of reading ``edge_index`` from the data.
        enforce_max_neighbors_strictly: cut ties at ``max_neighbors`` arbitrarily (fairchem's flag).
        graph_method: neighbour search, ``fairchem`` (all pairs) or ``cell_list`` (linear in atoms).
        vectors_out: keep the last layer's vector update (needed by direct forces).
    """

    def __init__(
        self,
        hidden_channels: int = 512,
        num_layers: int = 4,
        num_rbf: int = 128,
        cutoff: float = 6.0,
        max_neighbors: int = 20,
        rbf: str = "gaussian",
        envelope: str = "polynomial",
        envelope_exponent: int = 5,
        num_elements: int = 118,
        regress_forces: bool = True,
        direct_forces: bool = True,
        regress_stress: bool = False,
        use_pbc: bool = True,
        use_pbc_single: bool = False,
        otf_graph: bool = True,
        enforce_max_neighbors_strictly: bool = False,
        graph_method: str = "fairchem",
        vectors_out: bool | None = None,
    ) -> None:
        super().__init__()
        if hidden_channels % 2:
            raise ValueError(f"hidden_channels must be even, got {hidden_channels}")
        if regress_stress and direct_forces:
            raise ValueError("regress_stress needs conservative forces: set direct_forces: false")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.num_rbf = num_rbf
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.num_elements = num_elements
        self.regress_forces = regress_forces
        self.direct_forces = direct_forces
        self.regress_stress = regress_stress
        self.use_pbc = use_pbc
        self.use_pbc_single = use_pbc_single
        self.otf_graph = otf_graph
        self.enforce_max_neighbors_strictly = enforce_max_neighbors_strictly
        if graph_method not in GRAPH_METHODS:
            raise ValueError(f"unknown graph_method '{graph_method}': choose one of {', '.join(GRAPH_METHODS)}")
        self.graph_method = graph_method
        # the radial filters of banded bases skip their exact zeros (blocks/radial_bands.py); not
        # saved with the model: False keeps the plain [E, R + 1] matmul (the reference in tests).
        # CPU only: that is where the gain was measured; on a GPU one large matmul is already cheap
        # and a dozen small ones per layer cost kernel launches (unmeasured: no GPU was available).
        self.radial_bands = True
        if vectors_out is None:
            vectors_out = regress_forces and direct_forces

        self.atom_embedding = nn.Embedding(num_elements, hidden_channels)
        self.global_embedding = nn.Parameter(torch.empty(hidden_channels))
        self.radial = RadialEmbedding(num_rbf, cutoff, rbf, envelope, envelope_exponent)
        self.layers = nn.ModuleList(
            InteractionLayer(hidden_channels, num_rbf, last=(t == num_layers - 1), vectors_out=vectors_out)
            for t in range(num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(3.0)
        nn.init.uniform_(self.atom_embedding.weight, -bound, bound)
        nn.init.uniform_(self.global_embedding, -bound, bound)
        reset_linear_layers(self.layers)

    @property
    def conservative(self) -> bool:
        return self.regress_forces and not self.direct_forces

    def forward(self, data) -> dict[str, torch.Tensor | None]:
        with torch.set_grad_enabled(torch.is_grad_enabled() or self.conservative):
            return self._embed(data)

    def _embed(self, data) -> dict[str, torch.Tensor | None]:
        pos = data.pos  # [N, 3]
        natoms = data.natoms.view(-1)  # [B]
        num_graphs = natoms.numel()
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.repeat_interleave(torch.arange(num_graphs, device=pos.device), natoms)
        z = data.atomic_numbers.long()  # [N]
        if z.numel() and (int(z.min()) < 1 or int(z.max()) > self.num_elements):
            raise ValueError(
                f"atomic numbers must lie in 1..{self.num_elements} for this model, got {int(z.min())}..{int(z.max())}"
            )

        cell = structure_cells(data, num_graphs, pos.dtype, pos.device)  # [B, 3, 3]
        unstrained_cell = cell
        displacement = None
        if self.conservative:
            pos = pos.detach().requires_grad_(True)
            if self.regress_stress and any(periodic_flags(data, self.use_pbc)):
                displacement = torch.zeros((num_graphs, 3, 3), dtype=pos.dtype, device=pos.device,
                                           requires_grad=True)
                pos_used, cell = apply_strain(pos, cell, batch, displacement)
            else:
                pos_used = pos
        else:
            pos_used = pos

        graph = neighbor_graph(data, self.cutoff, self.max_neighbors, self.use_pbc, self.otf_graph,
                               self.enforce_max_neighbors_strictly, self.graph_method)
        geom = edge_geometry(pos_used, cell, batch, graph.edge_index, graph.cell_offsets)
        edge_index, unit_vec = geom.edge_index, geom.unit_vec  # [2, E], [E, 3]
        radial = RadialBands.whole(self.radial(geom.distance))  # [E, R + 1]
        if self.radial_bands and pos.device.type == "cpu":
            radial, order = radial_bands(radial.values)
            if order is not None:  # the layers see the edges in band order
                edge_index, unit_vec = edge_index[:, order], unit_vec[order]

        f = self.hidden_channels
        x = self.atom_embedding(z - 1).to(pos.dtype)  # [N, F]
        v = x.new_zeros((x.shape[0], 3, f))  # [N, 3, F]
        u = self.global_embedding.to(pos.dtype).unsqueeze(0).expand(num_graphs, f)  # [B, F]
        g = x.new_zeros((num_graphs, 3, f))  # [B, 3, F]
        buffers = EdgeBuffers()  # one per pass: scratch memory (no-grad only) and graph tables
        for layer in self.layers:
            x, v, u, g = layer(x, v, u, g, batch, radial, unit_vec, edge_index, buffers)

        return {
            "node_scalar": x,
            "node_vector": v,
            "global_scalar": u,
            "global_vector": g,
            "batch": batch,
            "pos": pos,
            "cell": unstrained_cell,
            "displacement": displacement,
        }
