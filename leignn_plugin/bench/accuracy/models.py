"""The models of the accuracy benchmark and their ``model:`` config sections at one shared size.

Equal budget means the same width (channels), depth (interaction layers), radial functions, cutoff
and neighbour cap wherever a model has the setting. Where fairchem fixes a setting the note says so
(SchNet and DimeNet++ hard-code a cap of 50 neighbours). Force heads are each model's usual choice on
OC20: direct for LEIGNN, PaiNN and GemNet-OC, the energy gradient for SchNet and DimeNet++.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """The shared size of every model: width, depth, radial functions, cutoff (Å), neighbour cap."""

    width: int = 64
    depth: int = 3
    num_rbf: int = 32
    cutoff: float = 6.0
    max_neighbors: int = 20


@dataclass(frozen=True)
class AccuracyModel:
    """One benchmarked model: its name on the command line, its label and what to know about it."""

    name: str
    label: str
    note: str

    def section(self, size: Size, use_pbc: bool) -> dict:
        """The ``model:`` section of this model's config at ``size``."""
        return MODEL_SECTIONS[self.name](size, use_pbc)


def _leignn(size: Size, use_pbc: bool, **extra) -> dict:
    return dict(name="leignn", hidden_channels=size.width, num_layers=size.depth, num_rbf=size.num_rbf,
                cutoff=size.cutoff, max_neighbors=size.max_neighbors, rbf="gaussian", envelope="polynomial",
                num_elements=118, regress_forces=True, direct_forces=True, use_pbc=use_pbc, otf_graph=True,
                **extra)


def _painn(size: Size, use_pbc: bool) -> dict:
    return dict(name="painn", hidden_channels=size.width, num_layers=size.depth, num_rbf=size.num_rbf,
                cutoff=size.cutoff, max_neighbors=size.max_neighbors, num_elements=118, regress_forces=True,
                direct_forces=True, use_pbc=use_pbc, otf_graph=True)


def _schnet(size: Size, use_pbc: bool) -> dict:
    return dict(name="schnet", hidden_channels=size.width, num_filters=size.width,
                num_interactions=size.depth, num_gaussians=size.num_rbf, cutoff=size.cutoff,
                regress_forces=True, use_pbc=use_pbc, otf_graph=True)


def _dimenet(size: Size, use_pbc: bool) -> dict:
    return dict(name="dimenetplusplus", hidden_channels=size.width, out_emb_channels=size.width,
                int_emb_size=max(size.width // 2, 2), basis_emb_size=8, num_blocks=size.depth, num_radial=6,
                num_spherical=7, cutoff=size.cutoff, regress_forces=True, use_pbc=use_pbc, otf_graph=True)


def _gemnet_oc(size: Size, use_pbc: bool) -> dict:
    small = max(size.width // 4, 2)
    return dict(
        name="gemnet_oc", num_spherical=7, num_radial=size.num_rbf, num_blocks=size.depth,
        emb_size_atom=size.width, emb_size_edge=size.width, emb_size_trip_in=small, emb_size_trip_out=small,
        emb_size_quad_in=max(small // 2, 2), emb_size_quad_out=max(small // 2, 2), emb_size_aint_in=small,
        emb_size_aint_out=small, emb_size_rbf=16, emb_size_cbf=16, emb_size_sbf=32, num_before_skip=1,
        num_after_skip=1, num_concat=1, num_atom=2, num_output_afteratom=2, num_atom_emb_layers=1,
        num_global_out_layers=1, regress_forces=True, direct_forces=True, use_pbc=use_pbc,
        cutoff=size.cutoff, cutoff_qint=size.cutoff, cutoff_aeaint=size.cutoff, cutoff_aint=size.cutoff,
        max_neighbors=size.max_neighbors, max_neighbors_qint=8, max_neighbors_aeaint=size.max_neighbors,
        max_neighbors_aint=1000, rbf={"name": "gaussian"}, envelope={"name": "polynomial", "exponent": 5},
        cbf={"name": "spherical_harmonics"}, sbf={"name": "legendre_outer"}, extensive=True,
        output_init="HeOrthogonal", activation="silu", forces_coupled=False, quad_interaction=False,
        atom_edge_interaction=True, edge_atom_interaction=True, atom_interaction=True, num_elements=118,
        otf_graph=True,
    )


MODEL_SECTIONS = {
    "leignn": _leignn,
    "vanilla": lambda size, pbc: _leignn(size, pbc, virtual_node=False, node_update="painn"),
    "vanilla-nmu": lambda size, pbc: _leignn(size, pbc, virtual_node=False, node_update="nmu"),
    "painn": _painn,
    "schnet": _schnet,
    "dimenet++": _dimenet,
    "gemnet-oc": _gemnet_oc,
}

MODELS: dict[str, AccuracyModel] = {
    m.name: m
    for m in (
        AccuracyModel("leignn", "LEIGNN", "virtual node + node-wise mixing update (NMU); direct forces"),
        AccuracyModel("vanilla", "Vanilla", "paper's ablation: no virtual node, PaiNN's node update"),
        AccuracyModel("vanilla-nmu", "Vanilla + NMU", "paper's ablation: no virtual node, NMU kept"),
        AccuracyModel("painn", "PaiNN", "fairchem's PaiNN, direct forces; no scale file (unscaled)"),
        AccuracyModel("schnet", "SchNet", "fairchem's SchNet, gradient forces; filters = width; "
                                          "neighbour cap fixed at 50 by fairchem"),
        AccuracyModel("dimenet++", "DimeNet++", "fairchem's DimeNet++, gradient forces, 6 radial x 7 spherical; "
                                                "neighbour cap fixed at 50 by fairchem"),
        AccuracyModel("gemnet-oc", "GemNet-OC", "fairchem's GemNet-OC, direct forces, small embeddings, "
                                                "no quadruplets, all cutoffs = cutoff; unscaled"),
    )
}

DEFAULT_SIZE = Size()
QUICK_SIZE = Size(width=16, depth=2, num_rbf=16)


def resolve(names: list[str]) -> list[AccuracyModel]:
    """The models called ``names``, in order; an unknown name raises ``ValueError`` listing the choices."""
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    if not names:
        raise ValueError(f"--models: no model given: choose from {', '.join(MODELS)}")
    return [MODELS[n] for n in dict.fromkeys(names)]
