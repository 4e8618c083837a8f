"""LEIGNN as a fairchem 2.x backbone and heads, for ``HydraModel`` configs and inference checkpoints.

Configs and checkpoints name the classes by dotted path, e.g.
``backbone: {model: leignn_plugin.fairchem2.models.LEIGNNBackbone, ...}`` and
``heads: {energy: {module: leignn_plugin.fairchem2.models.LEIGNNEnergyHead}}``; importing
``leignn_plugin`` under fairchem 2.x also registers the short names ``leignn_backbone``,
``leignn_energy_head``, ``leignn_force_head`` and ``leignn_conservative_head``.

Thin adapters over the core: the backbone reads ``AtomicData`` batches, searches the graph with the
project's one search and returns the representation's embeddings; the heads are the core's heads.
Parameter names are the core's (``layers.*``, ``energy_head.*``, ``force_head.*``) under fairchem's
``backbone.`` / ``output_heads.<name>.`` prefixes, which is what the 1.10 -> 2.x converter relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from fairchem.core.common.registry import registry
from fairchem.core.models.base import BackboneInterface, HeadInterface
from torch import nn

from leignn_plugin.adapters.batch import atom_graph
from leignn_plugin.adapters.heads import head_problem
from leignn_plugin.adapters.options import GRAPH_OPTIONS, set_graph_options
from leignn_plugin.adapters.speed import SpeedPathsFollowDevice
from leignn_plugin.core.heads import DirectForceHead, EnergyHead, direct_forces, energy_forces_stress
from leignn_plugin.core.options import OptionError, Rule, check_known, check_values
from leignn_plugin.core.representation import LEIGNNRepresentation
from leignn_plugin.fairchem2.graph_parallel import active_collectives
from leignn_plugin.graph import DEFAULT_MIN_DISTANCE

PROPERTIES = ("energy", "forces", "stress")
"""What LEIGNN's heads produce; a task asking for anything else is refused when the tasks are set up."""


@dataclass
class RegressConfig:
    """What fairchem 2.x's predict unit and ``HydraModel.add_tasks`` read and switch on the backbone.

    direct_forces: forces read off node vectors (no autograd, no stress).
    forces / stress: conservative forces -dE/dpos and the virial stress (1/V) dE/d(strain).
    hessian and direct_stress: not offered by LEIGNN (always False; kept because fairchem reads them).
    """

    direct_forces: bool = True
    forces: bool = False
    stress: bool = False
    direct_stress: bool = False
    hessian: bool = False


def batch_pbc(data, num_graphs: int, device: torch.device) -> torch.Tensor:
    """Periodicity [B, 3] of an ``AtomicData`` batch: ``data.pbc`` when the batch has it; fairchem 2.x's
    training collater drops it, and then a structure is periodic on all axes exactly when its cell has a
    volume (molecules come with a zero cell)."""
    pbc = getattr(data, "pbc", None)
    if pbc is not None:
        return torch.as_tensor(pbc, device=device).bool().view(-1, 3).expand(num_graphs, 3)
    volume = torch.linalg.det(data.cell.detach().view(-1, 3, 3).double()).abs()  # [B]
    return (volume > 1e-8).view(-1, 1).expand(num_graphs, 3)


class LEIGNNBackbone(SpeedPathsFollowDevice, LEIGNNRepresentation, BackboneInterface):
    """The LEIGNN representation on fairchem 2.x ``AtomicData`` batches (periodic and molecular, mixed).

    Takes every option of :class:`~leignn_plugin.core.representation.LEIGNNRepresentation` and the
    graph options every host has (``leignn_plugin.adapters.options.GRAPH_OPTIONS``:
    ``enforce_max_neighbors_strictly``, ``graph_method``, ``speed_paths``, ``min_distance``).
    ``regress_forces`` / ``direct_forces`` / ``regress_stress`` choose direct or conservative forces as in
    the 1.10 host; ``regress_config`` exposes them to fairchem's predict unit.
    """

    def __init__(
        self,
        *,
        enforce_max_neighbors_strictly: bool = False,
        graph_method: str = "vesin",
        speed_paths: bool = True,
        min_distance: float = DEFAULT_MIN_DISTANCE,
        **options,
    ) -> None:
        check_known(options, self.option_rules())
        given = locals()
        check_values({name: given[name] for name in GRAPH_OPTIONS}, GRAPH_OPTIONS)
        super().__init__(**options)
        set_graph_options(self, enforce_max_neighbors_strictly, graph_method, speed_paths, min_distance)
        self.choose_speed_paths()
        self.regress_config = RegressConfig(
            direct_forces=self.regress_forces and self.direct_forces,
            forces=self.conservative,
            stress=self.conservative and self.regress_stress,
        )

    @classmethod
    def option_rules(cls) -> dict[str, Rule]:
        """The representation's options and the graph options."""
        return {**super().option_rules(), **GRAPH_OPTIONS}

    def forward(self, data) -> dict[str, torch.Tensor | None]:
        """Embeddings of an ``AtomicData`` batch (see ``LEIGNNRepresentation.forward``).

        The batch also gets ``batch_full`` and ``atomic_numbers_full``, the names under which fairchem's
        element references (``ElementReferences.undo_refs``) read every atom of a structure, as fairchem's
        own backbones set them.

        Under fairchem's graph parallelism (``graph_parallel.py``) every rank computes its share of the atoms;
        the heads return whole results on every rank."""
        data["atomic_numbers_full"] = data["atomic_numbers"]
        data["batch_full"] = data["batch"]
        num_graphs = data.natoms.numel()
        graph = atom_graph(data, self.cutoff, self.max_neighbors, True, True, self.enforce_max_neighbors_strictly,
                           self.graph_method, self.min_distance, self.num_elements,
                           pbc=batch_pbc(data, num_graphs, data.pos.device))
        graph.parallel = active_collectives()
        return super().forward(graph)

    @classmethod
    def build_inference_settings(cls, settings) -> dict:
        """Backbone overrides for fairchem's inference settings: none are needed. LEIGNN has no mixture of
        experts to merge and no activation checkpointing; ``compile`` and ``tf32`` act on the whole model."""
        return {}

    def get_default_untrained_tasks(self, checkpoint_tasks: dict, inference_settings) -> list:
        """A conservative LEIGNN gives the stress of every energy dataset without one, for free.

        The stress task is scaled by the energy's rmsd with a zero mean: fairchem's own untrained stress
        task copies the whole energy normalizer, and its mean would be added to every stress component.
        """
        if self.regress_config.direct_forces:
            return []
        from fairchem.core.modules.normalization.normalizer import Normalizer
        from fairchem.core.units.mlip_unit.mlip_unit import OutputSpec, Task

        energy_tasks = {d: t for t in checkpoint_tasks.values() if t.property == "energy" for d in t.datasets}
        with_stress = {d for t in checkpoint_tasks.values() if t.property == "stress" for d in t.datasets}
        tasks = []
        for dataset in sorted(set(energy_tasks) - with_stress - set(inference_settings.predict_untrained_stress)):
            energy = energy_tasks[dataset]
            tasks.append(Task(
                name="stress" if energy.name == "energy" else f"{dataset}_stress",
                level="system",
                property="stress",
                out_spec=OutputSpec(dim=[1, 9], dtype=inference_settings.base_precision_dtype),
                normalizer=Normalizer(mean=0.0, rmsd=float(energy.normalizer.rmsd)),
                datasets=[dataset],
                element_references=None,
                inference_only=True,
            ))
        return tasks

    def validate_tasks(self, dataset_to_tasks: dict[str, list]) -> None:
        """Every task asks for energy, forces or stress, stress only from a conservative model, and the
        derivatives (forces, stress) are scaled without an offset."""
        for dataset, tasks in dataset_to_tasks.items():
            for task in tasks:
                if task.property not in PROPERTIES:
                    raise OptionError(f"task '{task.name}' (dataset {dataset}) asks for '{task.property}'; "
                                      f"LEIGNN predicts {', '.join(PROPERTIES)}")
                if task.property == "stress" and self.regress_config.direct_forces:
                    raise OptionError(f"task '{task.name}' asks for stress, which needs a conservative LEIGNN "
                                      "(regress_forces: true, direct_forces: false)")
                mean = float(getattr(task.normalizer, "mean", 0.0)) if task.normalizer is not None else 0.0
                if task.property in ("forces", "stress") and mean != 0.0:
                    raise OptionError(
                        f"task '{task.name}' would add {mean:g} to every {task.property} component (its normalizer "
                        "mean; fairchem's predict_untrained_* copies the energy's): a conservative LEIGNN adds "
                        "its stress task by itself, leave predict_untrained_stress unset")

    def prepare_for_inference(self, data, settings) -> LEIGNNBackbone:
        """Take over what fairchem switched on in ``regress_config`` (an untrained stress task turns the
        strain derivative on) and return this backbone unchanged."""
        if not self.regress_config.direct_forces:
            self.regress_stress = self.regress_stress or self.regress_config.stress
        return self

    def on_predict_check(self, data) -> None:
        """Nothing beyond what every forward pass checks (finite positions, elements, close atoms)."""

    def validate_atoms_data(self, atoms, task_name: str) -> None:
        """Charge and spin default to 0; LEIGNN has no input for them, so other values are refused
        rather than silently ignored."""
        for key in ("charge", "spin"):
            value = atoms.info.setdefault(key, 0)
            if value != 0:
                raise ValueError(f"atoms.info['{key}'] = {value}: LEIGNN models neutral, spin-free systems only "
                                 f"(leave {key} unset or 0)")


HEAD_NAMES = {"energy": "LEIGNNEnergyHead", "forces": "LEIGNNDirectForceHead",
              "conservative": "LEIGNNConservativeHead"}


class LEIGNNHead(nn.Module, HeadInterface):
    """Shared base of the heads: refuses a backbone whose force options do not fit the head."""

    role = "energy"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__()
        problem = self.backbone_problem(backbone)
        if problem:
            raise OptionError(problem)
        self.regress_config = backbone.regress_config

    @classmethod
    def backbone_problem(cls, backbone: LEIGNNBackbone) -> str | None:
        """Why this head cannot sit on ``backbone``, or None (``adapters.heads``: both hosts' one rule)."""
        return head_problem(cls.role, backbone.regress_forces, backbone.direct_forces, HEAD_NAMES)


class LEIGNNEnergyHead(LEIGNNHead):
    """``{"energy": E [B]}``: the sum of per-atom energies (name the head after its energy task)."""

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.energy_head = EnergyHead(backbone.hidden_channels)

    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        return energy_forces_stress(emb, self.energy_head, None, False, self.training)


class LEIGNNDirectForceHead(LEIGNNHead):
    """``{"forces": F [N, 3]}`` read off the node vectors (a backbone with ``direct_forces: true``)."""

    role = "forces"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.force_head = DirectForceHead(backbone.hidden_channels)


    def forward(self, data, emb: dict) -> dict[str, torch.Tensor]:
        return {"forces": direct_forces(emb, self.force_head)}


class LEIGNNConservativeHead(LEIGNNHead):
    """Energy, forces = -dE/dpos and, when switched on, stress = (1/V) dE/d(strain), from one energy.

    Returns ``{"energy": {"energy": E}, "forces": {"forces": F}, "stress": {"stress": S [B, 9]}}``: use it
    with ``pass_through_head_outputs: true`` and tasks named energy, forces and stress.
    """

    role = "conservative"

    def __init__(self, backbone: LEIGNNBackbone) -> None:
        super().__init__(backbone)
        self.energy_head = EnergyHead(backbone.hidden_channels)


    def forward(self, data, emb: dict) -> dict[str, dict[str, torch.Tensor]]:
        with torch.enable_grad():
            out = energy_forces_stress(emb, self.energy_head, None, True, self.training)
        result = {"energy": {"energy": out["energy"]}, "forces": {"forces": out["forces"]}}
        if "stress" in out:
            result["stress"] = {"stress": out["stress"].view(-1, 9)}  # [B, 9]; zero without a cell
        elif self.regress_config.stress:
            # only molecules in this batch: no cell to strain, zero stress (what ASE gets for them)
            result["stress"] = {"stress": out["energy"].new_zeros((out["energy"].shape[0], 9))}
        return result


REGISTERED_MODELS = {
    "leignn_backbone": LEIGNNBackbone,
    "leignn_energy_head": LEIGNNEnergyHead,
    "leignn_force_head": LEIGNNDirectForceHead,
    "leignn_conservative_head": LEIGNNConservativeHead,
}
for _name, _cls in REGISTERED_MODELS.items():
    registry.register_model(_name)(_cls)
