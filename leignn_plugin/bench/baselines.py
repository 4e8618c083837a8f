"""The models a benchmark compares: LEIGNN at the paper's OC20 size and the installed fairchem's own
baselines.

fairchem 1.10: the hyper-parameters of fairchem's OC20 S2EF configs (``configs/s2ef/all/...`` in the
fairchem repository). The configs' scale files are not shipped with the pip package: PaiNN and
GemNet-OC run unscaled, which costs the same (a scale factor is one multiply) but means their
outputs are not calibrated; that does not matter for cost; the reference is PaiNN at LEIGNN's size.
fairchem 2.x: LEIGNN and its ablations as ``HydraModel`` s, and fairchem 2.x's current backbone,
``models/uma``'s eSCN-MD at the UMA-small / eSEN-sm size (fairchem's ``K4L2`` backbone config:
128 channels, lmax = mmax = 2, 4 layers, 64 Gaussians, cutoff 6 Å, 30 neighbours; no mixture of
experts), with random weights, as the reference. fairchem's own models are named by dotted path;
LEIGNN and the models a host wraps are built by the installed host (``tools_host``); every model is built
only when measured, so this module imports no host.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from leignn_plugin.tools_host import ModelBuilder, installed

REFERENCE = "painn-512x4"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one benchmarked model: a class by dotted path (or a function) and its keyword arguments."""

    name: str
    label: str
    target: str | ModelBuilder
    kwargs: dict = field(default_factory=dict)
    note: str = ""

    def build(self) -> nn.Module:
        if callable(self.target):
            return self.target(**self.kwargs)
        module, _, cls = self.target.rpartition(".")
        factory: Callable[..., nn.Module] = getattr(importlib.import_module(module), cls)
        return factory(**self.kwargs)


def host_leignn(**kwargs) -> nn.Module:
    """LEIGNN with ``leignn_kwargs`` options as the installed host builds it: fairchem 1.10's ``LEIGNN``,
    or fairchem 2.x's ``HydraModel`` with flat outputs (both output ``energy``, ``forces`` [N, 3])."""
    return installed().leignn(**kwargs)


@dataclass(frozen=True)
class HostBaseline:
    """A fairchem model the installed host wraps to be benchmarked (its ``baselines[name]``)."""

    name: str

    def __call__(self, **kwargs) -> nn.Module:
        return installed().baselines[self.name](**kwargs)


def leignn_kwargs(hidden_channels: int = 512, num_layers: int = 4, cutoff: float = 6.0,
                  max_neighbors: int = 20, **extra) -> dict:
    """LEIGNN at the paper's OC20 size (F=512, T=4, 128 radial functions) with direct forces."""
    return dict(hidden_channels=hidden_channels, num_layers=num_layers, num_rbf=128, cutoff=cutoff,
                max_neighbors=max_neighbors, regress_forces=True, direct_forces=True, use_pbc=True,
                otf_graph=True, **extra)


def painn_with_flushed_radial(**kwargs) -> nn.Module:
    """fairchem's PaiNN with its radial features flushed of subnormals, as LEIGNN's radial block does.

    Both models use 128 Gaussians of the same width, whose far tails are subnormal floats that slow
    the radial matmul threefold on CPUs. This variant (a forward hook, fairchem's code untouched)
    separates what LEIGNN gains from that implementation detail from what it gains by design.
    """
    from fairchem.core.models.painn.painn import PaiNN

    from leignn_plugin.accel.radial import flush_tiny

    model = PaiNN(**kwargs)
    model.radial_basis.register_forward_hook(lambda module, args, out: flush_tiny(out))
    return model


_PAINN_512X4 = dict(hidden_channels=512, num_layers=4, num_rbf=128, cutoff=6.0, max_neighbors=20,
                    regress_forces=True, direct_forces=True, use_pbc=True, otf_graph=True)

_GEMNET_OC = dict(
    num_spherical=7, num_radial=128, num_blocks=4, emb_size_atom=256, emb_size_edge=512,
    emb_size_trip_in=64, emb_size_trip_out=64, emb_size_quad_in=32, emb_size_quad_out=32,
    emb_size_aint_in=64, emb_size_aint_out=64, emb_size_rbf=16, emb_size_cbf=16, emb_size_sbf=32,
    num_before_skip=2, num_after_skip=2, num_concat=1, num_atom=3, num_output_afteratom=3,
    num_atom_emb_layers=2, num_global_out_layers=2, regress_forces=True, direct_forces=True,
    use_pbc=True, cutoff=12.0, cutoff_qint=12.0, cutoff_aeaint=12.0, cutoff_aint=12.0,
    max_neighbors=30, max_neighbors_qint=8, max_neighbors_aeaint=20, max_neighbors_aint=1000,
    rbf={"name": "gaussian"}, envelope={"name": "polynomial", "exponent": 5},
    cbf={"name": "spherical_harmonics"}, sbf={"name": "legendre_outer"}, extensive=True,
    output_init="HeOrthogonal", activation="silu", forces_coupled=False, quad_interaction=True,
    atom_edge_interaction=True, edge_atom_interaction=True, atom_interaction=True,
    qint_tags=[1, 2], otf_graph=True,
)

_EQUIFORMER_V2_31M = dict(
    use_pbc=True, regress_forces=True, otf_graph=True, max_neighbors=20, max_radius=12.0,
    max_num_elements=90, num_layers=8, sphere_channels=128, attn_hidden_channels=64, num_heads=8,
    attn_alpha_channels=64, attn_value_channels=16, ffn_hidden_channels=128, norm_type="layer_norm_sh",
    lmax_list=[4], mmax_list=[2], grid_resolution=18, num_sphere_samples=128, edge_channels=128,
    use_atom_edge_embedding=True, share_atom_edge_embedding=False, distance_function="gaussian",
    num_distance_basis=512, attn_activation="silu", use_s2_act_attn=False, use_attn_renorm=True,
    ffn_activation="silu", use_gate_act=False, use_grid_mlp=True, use_sep_s2_act=True, alpha_drop=0.1,
    drop_path_rate=0.1, proj_drop=0.0, weight_init="uniform",
)

MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("leignn", "LEIGNN 512x4 (c6, n20)", host_leignn, leignn_kwargs(), "paper's OC20 size, direct forces"),
        ModelSpec(REFERENCE, "PaiNN 512x4 (c6, n20)", "fairchem.core.models.painn.painn.PaiNN",
                  _PAINN_512X4, "same width, depth, cutoff and neighbours as LEIGNN; unscaled"),
        ModelSpec("painn-512x4-flushed", "PaiNN 512x4, subnormals flushed",
                  painn_with_flushed_radial, _PAINN_512X4,
                  "the reference with LEIGNN's subnormal flush of the radial features"),
        ModelSpec("painn", "PaiNN (OC20)", "fairchem.core.models.painn.painn.PaiNN",
                  dict(hidden_channels=512, num_layers=6, num_rbf=128, cutoff=12.0, max_neighbors=50,
                       regress_forces=True, direct_forces=True, use_pbc=True, otf_graph=True),
                  "painn_h512 config; scale file not shipped, unscaled"),
        ModelSpec("schnet", "SchNet (OC20)", "fairchem.core.models.schnet.SchNetWrap",
                  dict(hidden_channels=1024, num_filters=256, num_interactions=5, num_gaussians=200,
                       cutoff=6.0, use_pbc=True, regress_forces=True, otf_graph=True),
                  "gradient forces"),
        ModelSpec("dimenet++", "DimeNet++ (OC20)", "fairchem.core.models.dimenet_plus_plus.DimeNetPlusPlusWrap",
                  dict(hidden_channels=192, out_emb_channels=192, num_blocks=3, cutoff=6.0, num_radial=6,
                       num_spherical=7, num_before_skip=1, num_after_skip=2, num_output_layers=3,
                       int_emb_size=64, basis_emb_size=8, regress_forces=True, use_pbc=True,
                       otf_graph=True),
                  "gradient forces"),
        ModelSpec("gemnet-oc", "GemNet-OC (OC20)", "fairchem.core.models.gemnet_oc.gemnet_oc.GemNetOC",
                  _GEMNET_OC, "scale file not shipped with the pip package: unscaled"),
        ModelSpec("equiformer-v2", "EquiformerV2 31M (OC20)",
                  "fairchem.core.models.equiformer_v2.equiformer_v2_deprecated.EquiformerV2",
                  _EQUIFORMER_V2_31M, "N@8 L@4 M@2 31M config"),
    )
}

DEFAULT_MODELS = tuple(MODEL_SPECS)

REFERENCE_FAIRCHEM2 = "esen-sm"

ESEN_SM = dict(max_num_elements=100, sphere_channels=128, lmax=2, mmax=2, otf_graph=True, max_neighbors=30,
               cutoff=6.0, edge_channels=128, distance_function="gaussian", num_distance_basis=64,
               regress_forces=True, direct_forces=True, num_layers=4, hidden_channels=128, norm_type="rms_norm_sh",
               act_type="gate", ff_type="spectral", chg_spin_emb_type="rand_emb",
               dataset_mapping={"oc20": "oc20"})
"""fairchem's UMA-small backbone config (``configs/uma/training_release/backbone/K4L2.yaml``) without the
mixture of experts, direct forces, OC20's 30 neighbours."""


MODEL_SPECS_FAIRCHEM2: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("leignn", "LEIGNN 512x4 (c6, n20)", host_leignn, leignn_kwargs(),
                  "paper's OC20 size, direct forces, a fairchem 2.x HydraModel"),
        ModelSpec("leignn-vanilla", "LEIGNN Vanilla 512x4", host_leignn,
                  leignn_kwargs(virtual_node=False, node_update="painn"),
                  "the paper's ablation: PaiNN's update, no virtual node"),
        ModelSpec("leignn-vanilla-nmu", "LEIGNN Vanilla + NMU 512x4", host_leignn,
                  leignn_kwargs(virtual_node=False), "the paper's ablation: LEIGNN's update, no virtual node"),
        ModelSpec(REFERENCE_FAIRCHEM2, "eSEN-sm / UMA-small backbone (c6, n30)", HostBaseline("escn-md"), ESEN_SM,
                  "fairchem 2.x models/uma eSCN-MD, K4L2 size, no MoE, direct forces; random weights"),
    )
}


def model_set(host: int | None) -> tuple[dict[str, ModelSpec], str]:
    """The models the installed host can build, and the reference the ratios are taken to."""
    return (MODEL_SPECS_FAIRCHEM2, REFERENCE_FAIRCHEM2) if host == 2 else (MODEL_SPECS, REFERENCE)


def resolve(names: list[str] | None, host: int | None = 1) -> list[ModelSpec]:
    """The specs for ``names`` (None: all of the host's) in order; the host's reference is always
    included (ratios need it)."""
    specs, reference = model_set(host)
    names = list(specs) if names is None else names
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(specs)}")
    if reference not in names:
        names = [reference, *names]
    return [specs[n] for n in dict.fromkeys(names)]
