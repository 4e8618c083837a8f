"""The LEIGNN representation: atoms and a per-structure virtual node, scalars and vectors.

Reads an :class:`~leignn_plugin.core.inputs.AtomGraph` (plain tensors, edges already found) and
returns a dict of named embeddings; heads (``heads/``) turn them into energy, forces and stress.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.core.activation import reset_linear_layers
from leignn_plugin.core.edges import EdgeLayout
from leignn_plugin.core.elements import ElementRecord
from leignn_plugin.core.geometry import apply_strain, edge_geometry
from leignn_plugin.core.inputs import AtomGraph
from leignn_plugin.core.interaction import InteractionLayer
from leignn_plugin.core.options import REPRESENTATION_OPTIONS, Rule, check_options
from leignn_plugin.core.parallel import AtomShare
from leignn_plugin.core.radial import RadialEmbedding


class LEIGNNRepresentation(nn.Module):
    """Lightweight equivariant interaction graph network (Yang et al., arXiv 2311.02869).

    x_i = embed(Z_i), v_i = 0, u_G = u_0, g_G = 0; then T interaction layers, each
    (virtual node -> atoms, message, node update, atoms -> virtual node). Training batches mark their
    elements in ``element_record`` (saved with the weights); in eval mode a structure holding others
    gets one warning line (``leignn_plugin.core.elements``).

    Args:
        hidden_channels: F, the width of scalar and vector features (even: the message MLP halves it).
        num_layers: T, the number of interaction layers.
        num_rbf: number of radial basis functions.
        cutoff: neighbour cutoff in Å (the graph's; saved with the model).
        max_neighbors: at most this many neighbours per atom (the graph's; saved with the model).
        rbf: radial basis, ``gaussian`` | ``spherical_bessel`` | ``bernstein``.
        envelope: cutoff envelope, ``polynomial`` | ``exponential``.
        envelope_exponent: exponent p of the polynomial envelope.
        num_elements: atomic numbers 1..num_elements are accepted.
        regress_forces: whether forces are wanted at all.
        direct_forces: forces from node vectors (True) or -dE/dpos (False, conservative).
        regress_stress: with conservative forces, also the virial stress of periodic cells.
        vectors_out: keep the last layer's vector update (needed by direct forces).
        virtual_node: the per-structure virtual node (False: the paper's Vanilla ablations).
        node_update: ``nmu`` (the paper's) or ``painn`` (PaiNN's update, the paper's Vanilla).
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
        vectors_out: bool | None = None,
        virtual_node: bool = True,
        node_update: str = "nmu",
    ) -> None:
        given = locals()
        check_options({name: given[name] for name in REPRESENTATION_OPTIONS})
        super().__init__()
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.num_rbf = num_rbf
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.num_elements = num_elements
        self.regress_forces = regress_forces
        self.direct_forces = direct_forces
        self.regress_stress = regress_stress
        self.virtual_node = virtual_node
        self.node_update = node_update
        if vectors_out is None:
            vectors_out = regress_forces and direct_forces

        self.atom_embedding = nn.Embedding(num_elements, hidden_channels)
        self.element_record = ElementRecord(num_elements)
        if virtual_node:
            self.global_embedding = nn.Parameter(torch.empty(hidden_channels))
        self.radial = RadialEmbedding(num_rbf, cutoff, rbf, envelope, envelope_exponent)
        self.edge_layout = EdgeLayout()
        self.layers = nn.ModuleList(
            InteractionLayer(hidden_channels, num_rbf, last=(t == num_layers - 1), vectors_out=vectors_out,
                             virtual_node=virtual_node, node_update_name=node_update)
            for t in range(num_layers)
        )
        self.reset_parameters()

    @classmethod
    def option_rules(cls) -> dict[str, Rule]:
        """Every constructor option and what it accepts (a host's subclass adds its own options)."""
        return dict(REPRESENTATION_OPTIONS)

    def reset_parameters(self) -> None:
        bound = math.sqrt(3.0)
        nn.init.uniform_(self.atom_embedding.weight, -bound, bound)
        if self.virtual_node:
            nn.init.uniform_(self.global_embedding, -bound, bound)
        reset_linear_layers(self.layers)

    @property
    def conservative(self) -> bool:
        return self.regress_forces and not self.direct_forces

    @property
    def trained_elements(self) -> tuple[int, ...] | None:
        """The atomic numbers of the training data (None: trained before the record existed, or untrained)."""
        return self.element_record.elements()

    def check_elements(self, numbers: torch.Tensor) -> None:
        """One line when an atomic number lies outside 1..num_elements."""
        if numbers.numel() and (int(numbers.min()) < 1 or int(numbers.max()) > self.num_elements):
            raise ValueError(f"atomic numbers must lie in 1..{self.num_elements} for this model, "
                             f"got {int(numbers.min())}..{int(numbers.max())}")

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor | None]:
        """Embeddings of ``graph``: node_scalar [N, F], node_vector [N, 3, F], global_scalar [B, F],
        global_vector [B, 3, F], what the heads differentiate (pos, cell, displacement), which
        structures are periodic (periodic [B]) and, under graph parallelism, this rank's ``share``
        (then node_scalar, node_vector and batch hold its n_r atoms; pos and cell stay whole)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() or self.conservative):
            return self._embed(graph)

    def _embed(self, graph: AtomGraph) -> dict[str, torch.Tensor | None]:
        z = graph.numbers.long()  # [N]
        self.check_elements(z)
        if self.training:
            self.element_record.mark(z)
        else:
            self.element_record.warn_unseen(z)
        pos, cell, batch, num_graphs = graph.pos, graph.cell.to(graph.pos.dtype), graph.batch, graph.num_graphs
        displacement = None
        pos_used, cell_used = pos, cell
        if self.conservative:
            pos = pos.detach().requires_grad_(True)
            pos_used = pos
            if self.regress_stress and graph.any_periodic:
                # forces and stress are derivatives by positions and a homogeneous strain
                displacement = torch.zeros((num_graphs, 3, 3), dtype=pos.dtype, device=pos.device,
                                           requires_grad=True)
                pos_used, cell_used = apply_strain(pos, cell, batch, displacement)

        edge_index, cell_offsets = graph.edge_index, graph.cell_offsets
        share = None if graph.parallel is None else AtomShare.of(graph.parallel, batch, num_graphs)
        if share is not None:
            # this rank's atoms and the edges ending on them; sources keep their global index
            own = share.owns_target(edge_index)  # [E]
            edge_index, cell_offsets = edge_index[:, own], cell_offsets[own]
            z, batch = share.local(z), share.local(batch)  # [n_r]
        geom = edge_geometry(pos_used, cell_used, graph.batch, edge_index, cell_offsets)
        # the radial features [E, R + 1] go straight into the layout, which may replace them (no
        # reference kept here: on 100,000 atoms they take 2 GB)
        edges = self.edge_layout(geom.edge_index, geom.unit_vec, self.radial(geom.distance))

        f = self.hidden_channels
        x = self.atom_embedding(z - 1).to(pos.dtype)  # [N, F]
        v = x.new_zeros((x.shape[0], 3, f))  # [N, 3, F]
        if self.virtual_node:
            # [B, F]; a copy, not a view: a view of the parameter made under no_grad still requires grad
            # without a grad_fn, which trips autograd hooks (torch's module tracker, FLOP counting)
            u = self.global_embedding.to(pos.dtype).unsqueeze(0).expand(num_graphs, f).clone()
        else:
            u = x.new_zeros((num_graphs, f))  # [B, F], never read
        g = x.new_zeros((num_graphs, 3, f))  # [B, 3, F]
        for layer in self.layers:
            x, v, u, g = layer(x, v, u, g, batch, edges, share)

        return {
            "node_scalar": x,
            "node_vector": v,
            "global_scalar": u,
            "global_vector": g,
            "batch": batch,
            "pos": pos,
            "cell": cell,
            "displacement": displacement,
            "periodic": graph.pbc.any(dim=1),  # [B]: which structures have a stress
            "share": share,
        }
