"""ASE structures as one fairchem 1.10 batch (what the tests and benchmarks feed the 1.10 models), and
the 1.10 LEIGNN built from core weights (the cross-host check). The host registers both with
``tools_host`` on import."""

from __future__ import annotations

import torch
from ase import Atoms
from fairchem.core.datasets.lmdb_dataset import data_list_collater
from fairchem.core.preprocessing import AtomsToGraphs


def atoms_batch(atoms_list: list[Atoms], dtype: torch.dtype = torch.float32):
    """Convert ASE structures with fairchem's AtomsToGraphs and collate them into one batch.

    AtomsToGraphs stores float32 positions; they are replaced by the exact ones in ``dtype`` so
    that float64 checks see float64 geometry.
    """
    a2g = AtomsToGraphs(r_edges=False, r_energy=False, r_forces=False, r_fixed=True, r_pbc=True)
    data_list = []
    for k, atoms in enumerate(atoms_list):
        data = a2g.convert(atoms)
        data.sid = k
        data.tags = torch.as_tensor(atoms.get_tags(), dtype=torch.long)
        data.pos = torch.tensor(atoms.get_positions(), dtype=dtype)  # [n, 3]
        data.cell = torch.tensor(atoms.cell.array, dtype=dtype).view(1, 3, 3)  # [1, 3, 3]
        data_list.append(data)
    return data_list_collater(data_list, otf_graph=True)


def potential(options: dict, core_state: dict | None = None, dtype: torch.dtype = torch.float64):
    """The 1.10 model ``leignn`` of the representation ``options`` in eval mode and ``dtype``, with the
    core potential's weights ``core_state`` (names ``backbone.*``, ``energy_head.*``, ``force_head.*``)
    when given; its outputs are already flat (``energy``, ``forces``, ``stress`` [B, 3, 3])."""
    from leignn_plugin.fairchem1.models import LEIGNN

    model = LEIGNN(**options, use_pbc=True, otf_graph=True)
    if core_state is not None:
        model.load_state_dict(core_state, strict=True)
    return model.to(dtype).eval()
