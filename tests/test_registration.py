"""Every name the plugin registers resolves by short name and by dotted path, and hydra assembles."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from fairchem.core.common.registry import registry

import leignn_plugin
from leignn_plugin.testing.structures import bulk_cell, to_batch

DOTTED = {
    "leignn": "leignn_plugin.fairchem1.models.LEIGNN",
    "leignn_backbone": "leignn_plugin.fairchem1.models.LEIGNNBackbone",
    "leignn_energy_head": "leignn_plugin.fairchem1.models.LEIGNNEnergyHead",
    "leignn_force_head": "leignn_plugin.fairchem1.models.LEIGNNDirectForceHead",
    "leignn_conservative_head": "leignn_plugin.fairchem1.models.LEIGNNConservativeHead",
}
# the dotted paths of the first release, stored in existing configs and checkpoints
OLD_DOTTED = {
    "leignn": "leignn_plugin.models.leignn.LEIGNN",
    "leignn_backbone": "leignn_plugin.models.backbone.LEIGNNBackbone",
    "leignn_energy_head": "leignn_plugin.models.leignn.LEIGNNEnergyHead",
    "leignn_force_head": "leignn_plugin.models.leignn.LEIGNNDirectForceHead",
    "leignn_conservative_head": "leignn_plugin.models.leignn.LEIGNNConservativeHead",
}
SMALL = dict(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0, max_neighbors=50)


@pytest.mark.parametrize("name", sorted(leignn_plugin.REGISTERED_MODELS))
def test_short_and_dotted_names_resolve(name):
    cls = leignn_plugin.REGISTERED_MODELS[name]
    assert registry.get_model_class(name) is cls
    assert registry.get_model_class(DOTTED[name]) is cls
    assert registry.get_model_class(OLD_DOTTED[name]) is cls


def test_dotted_name_resolves_without_importing_the_plugin_first():
    code = (
        "from fairchem.core.common.registry import registry;"
        f"cls = registry.get_model_class('{DOTTED['leignn']}');"
        "print(cls.__name__, registry.get_model_class('leignn').__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["LEIGNN", "LEIGNN"]


@pytest.mark.parametrize("direct", [True, False])
def test_hydra_equals_the_single_model(direct):
    """backbone + heads in fairchem's HydraModel compute what LEIGNN computes with the same weights."""
    from fairchem.core.models.base import HydraModel

    torch.manual_seed(0)
    single = leignn_plugin.LEIGNN(**SMALL, direct_forces=direct).double().eval()
    torch.nn.init.normal_(single.energy_head.mlp[-1].weight)
    heads = ({"energy": {"module": "leignn_energy_head"}, "forces": {"module": "leignn_force_head"}} if direct
             else {"energy_forces": {"module": "leignn_conservative_head"}})
    hydra = HydraModel(backbone={"model": "leignn_backbone", **SMALL, "direct_forces": direct}, heads=heads,
                       pass_through_head_outputs=not direct).double().eval()
    hydra.backbone.load_state_dict(single.backbone.state_dict())
    if direct:
        hydra.output_heads["energy"].energy_head.load_state_dict(single.energy_head.state_dict())
        hydra.output_heads["forces"].force_head.load_state_dict(single.force_head.state_dict())
    else:
        hydra.output_heads["energy_forces"].energy_head.load_state_dict(single.energy_head.state_dict())
    batch = to_batch([bulk_cell(), bulk_cell(seed=4)], torch.float64)
    ref = single(batch)
    out = hydra(batch)
    energy = out["energy"]["energy"] if direct else out["energy"]
    forces = out["forces"]["forces"] if direct else out["forces"]
    torch.testing.assert_close(energy, ref["energy"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(forces, ref["forces"], rtol=1e-12, atol=1e-12)


def test_conservative_forces_under_no_grad():
    """validate/predict/relaxations run under no_grad; gradient forces must still come out."""
    torch.manual_seed(0)
    model = leignn_plugin.LEIGNN(**SMALL, direct_forces=False).eval()
    torch.nn.init.normal_(model.energy_head.mlp[-1].weight)
    batch = to_batch([bulk_cell()], torch.float32)
    with torch.enable_grad():
        ref = model(batch)["forces"].detach()
    with torch.no_grad():
        out = model(batch)
    assert not out["forces"].requires_grad
    torch.testing.assert_close(out["forces"], ref)
    assert float(out["forces"].abs().max()) > 0


def test_precomputed_edges_match_on_the_fly_graph():
    """otf_graph=False reads edge_index/cell_offsets from the data, as LMDBs written with edges have."""
    from fairchem.core.datasets.lmdb_dataset import data_list_collater
    from fairchem.core.preprocessing import AtomsToGraphs

    torch.manual_seed(0)
    options = {**SMALL, "max_neighbors": 100}
    otf = leignn_plugin.LEIGNN(**options).double().eval()
    torch.nn.init.normal_(otf.energy_head.mlp[-1].weight)
    stored = leignn_plugin.LEIGNN(**options, otf_graph=False).double().eval()
    stored.load_state_dict(otf.state_dict())
    a2g = AtomsToGraphs(max_neigh=100, radius=SMALL["cutoff"], r_edges=True, r_fixed=True, r_pbc=True)
    atoms = bulk_cell()
    atoms.wrap()  # stored offsets refer to wrapped positions, as in fairchem's own preprocessing
    data = a2g.convert(atoms)
    data.pos = torch.tensor(atoms.positions, dtype=torch.float64)
    data.cell = torch.tensor(atoms.cell.array, dtype=torch.float64).view(1, 3, 3)
    batch = data_list_collater([data], otf_graph=False)
    e_stored = stored(batch)["energy"]
    del batch.edge_index, batch.cell_offsets
    e_otf = otf(batch)["energy"]
    torch.testing.assert_close(e_stored, e_otf, rtol=1e-9, atol=1e-9)
