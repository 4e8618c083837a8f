"""What the generic suite, the cross-host check and ``leignn-bench`` need from fairchem 2.x: ASE structures
as one ``AtomicData`` batch, a LEIGNN ``HydraModel`` with flat outputs (built from core weights, or with
random ones at a benchmark's size) and fairchem's own eSCN-MD (UMA-small size) the same way. The host
registers them with ``tools_host`` on import."""

from __future__ import annotations

import torch
from ase import Atoms
from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch
from fairchem.core.models.base import HydraModel
from torch import nn

from leignn_plugin.fairchem2.convert import hydra_config, state_dict_2x


def atoms_batch(atoms_list: list[Atoms], dtype: torch.dtype = torch.float32, task_name: str | None = None):
    """Convert with ``AtomicData.from_ase`` (as FAIRChemCalculator does) and collate into one batch.

    ``from_ase`` wraps positions into the cell; the exact given positions are put back in ``dtype``, so
    that checks moving an atom to its periodic image see the moved atom. ``task_name``: the dataset a
    predict unit's tasks are named for (what FAIRChemCalculator's ``task_name`` sets).
    """
    data_list = []
    for k, atoms in enumerate(atoms_list):
        data = AtomicData.from_ase(atoms, sid=str(k), target_dtype=dtype, task_name=task_name)
        data.pos = torch.tensor(atoms.get_positions(), dtype=dtype)  # [n, 3]
        data_list.append(data)
    return atomicdata_list_to_batch(data_list)


class FlatOutputs(nn.Module):
    """A ``HydraModel`` whose nested outputs (``{"energy": {"energy": E}}``, stress [B, 9]) are given flat,
    as the core's: ``energy`` [B], ``forces`` [N, 3], ``stress`` [B, 3, 3]."""

    def __init__(self, model: HydraModel) -> None:
        super().__init__()
        self.model = model

    @property
    def backbone(self):
        """The LEIGNN backbone (its cutoff and options), as on the 1.10 model."""
        return self.model.backbone

    def forward(self, data) -> dict[str, torch.Tensor]:
        out = {}
        for name, value in self.model(data).items():
            tensor = value[name] if isinstance(value, dict) and name in value else value
            out[name] = tensor.view(-1, 3, 3) if name == "stress" else tensor
        return out


class WithDataset(nn.Module):
    """A model that reads ``data.dataset`` (fairchem's UMA backbones embed it) on batches that may lack it:
    each structure is given ``dataset``."""

    def __init__(self, model: nn.Module, dataset: str) -> None:
        super().__init__()
        self.model, self.dataset = model, dataset

    def forward(self, data) -> dict[str, torch.Tensor]:
        if getattr(data, "dataset", None) is None:
            data.dataset = [self.dataset] * int(data.natoms.numel())
        return self.model(data)


GRAPH_FROM_DATA = ("use_pbc", "otf_graph")
"""1.10 model options that 2.x takes from the data instead (``pbc`` of each structure, graphs always on
the fly): ignored here, so that both hosts build LEIGNN from the same benchmark options."""


def leignn_hydra(**options) -> FlatOutputs:
    """LEIGNN with direct or conservative forces as a 2.x ``HydraModel`` (random weights), flat outputs."""
    options = {key: value for key, value in options.items() if key not in GRAPH_FROM_DATA}
    conservative = options.get("regress_forces", True) and not options.get("direct_forces", True)
    config = hydra_config(options, conservative)
    config.pop("_target_")
    return FlatOutputs(HydraModel(**config))


def esen_hydra(**options) -> WithDataset:
    """fairchem 2.x's eSCN-MD backbone (``models/uma``) with its energy and direct force heads, random
    weights, flat outputs; ``dataset_mapping`` names the one dataset every structure is given."""
    heads = {"energy": {"module": "fairchem.core.models.uma.escn_md.MLP_Energy_Head"},
             "forces": {"module": "fairchem.core.models.uma.escn_md.Linear_Force_Head"}}
    model = HydraModel(backbone={"model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone", **options}, heads=heads)
    return WithDataset(FlatOutputs(model), next(iter(options["dataset_mapping"])))


def potential(options: dict, core_state: dict | None = None, dtype: torch.dtype = torch.float64) -> FlatOutputs:
    """The 2.x LEIGNN ``HydraModel`` of the representation ``options`` (the converter's layout of heads),
    in eval mode and ``dtype``, with the core potential's weights ``core_state`` when given."""
    conservative = options.get("regress_forces", True) and not options.get("direct_forces", True)
    config = hydra_config(options, conservative)
    config.pop("_target_")
    model = HydraModel(**config)
    if core_state is not None:
        model.load_state_dict(state_dict_2x(core_state), strict=True)
    return FlatOutputs(model.to(dtype)).eval()
