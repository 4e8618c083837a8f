"""A LEIGNN checkpoint of the fairchem 1.10 host as a fairchem 2.x inference checkpoint.

One trained model serves both hosts: the 1.10 checkpoint (``main.py`` training, model ``leignn`` or a
hydra on LEIGNN's backbone) is read weights-only by the project's one checkpoint reader
(``leignn_plugin.checkpoints``, which puts its EMA weights in place as fairchem 1.10's trainer does),
and the weights (with the record of the elements it was trained on), normalizers and element
references become a ``HydraModel`` on :class:`~leignn_plugin.fairchem2.models.LEIGNNBackbone` with
tasks ``energy``, ``forces`` (and ``stress`` for conservative models) that de-normalize exactly as the
1.10 trainer does:
E = E_model * rmsd_E + mean_E + sum of element references, F = F_model * rmsd_F + mean_F.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

from leignn_plugin.adapters.checkpoint_files import (
    read_checkpoint,
    stored_element_references,
    stored_normalizers,
)
from leignn_plugin.checkpoints.format1 import read_format1
from leignn_plugin.checkpoints.names import is_leignn_config
from leignn_plugin.checkpoints.potential import build_core
from leignn_plugin.outputs import check_output_file, refuse_input_as_output, replace_file

BACKBONE = "leignn_plugin.fairchem2.models.LEIGNNBackbone"
HEADS = {
    "energy": "leignn_plugin.fairchem2.models.LEIGNNEnergyHead",
    "forces": "leignn_plugin.fairchem2.models.LEIGNNDirectForceHead",
    "conservative": "leignn_plugin.fairchem2.models.LEIGNNConservativeHead",
}
def _normalizer(normalizers: dict, target: str) -> dict:
    """The 2.x normalizer config of ``target`` (mean 0, rmsd 1 when the 1.10 run did not normalize)."""
    found = normalizers.get(target) or {}
    return {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
            "mean": float(found.get("mean", 0.0)), "rmsd": float(found.get("rmsd", 1.0))}


def _task(name: str, level: str, dim: list[int], normalizers: dict, dataset: str, normalizer_of: str) -> dict:
    return {
        "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
        "name": name,
        "level": level,
        "property": name,
        "out_spec": {"dim": dim, "dtype": "float32"},
        "normalizer": _normalizer(normalizers, normalizer_of),
        "datasets": [dataset],
        "train_on_free_atoms": True,
        "eval_on_free_atoms": True,
    }


def tasks_config(checkpoint: dict, path: Path, dataset: str, conservative: bool, stress: bool) -> list[dict]:
    """The 2.x tasks reproducing the 1.10 trainer's de-normalization (stress uses the energy's scale) of
    the checkpoint read from ``path``."""
    normalizers = stored_normalizers(checkpoint, path)
    energy = _task("energy", "system", [1], normalizers, dataset, "energy")
    refs = stored_element_references(checkpoint, path).get("energy")
    if refs is not None:
        values = refs.double().tolist()
        energy["element_references"] = {
            "_target_": "fairchem.core.modules.normalization.element_references.ElementReferences",
            "element_references": {"_target_": "torch.DoubleTensor", "_args_": [values]},
        }
    tasks = [energy, _task("forces", "atom", [3], normalizers, dataset, "forces")]
    if conservative and stress:
        stress_task = _task("stress", "system", [1, 9], normalizers, dataset, "energy")
        stress_task["normalizer"]["mean"] = 0.0
        tasks.append(stress_task)
    return tasks


def hydra_config(options: dict, conservative: bool) -> dict:
    """The 2.x ``HydraModel`` config on LEIGNN's backbone and heads."""
    if conservative:
        heads = {"energy": {"module": HEADS["conservative"]}}
    else:
        heads = {"energy": {"module": HEADS["energy"]}, "forces": {"module": HEADS["forces"]}}
    return {"_target_": "fairchem.core.models.base.HydraModel", "backbone": {"model": BACKBONE, **options},
            "heads": heads, "pass_through_head_outputs": conservative}


def state_dict_2x(core: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Core names (``backbone.*``, ``energy_head.*``, ``force_head.*``) as the 2.x model's names."""
    out = {}
    for key, value in core.items():
        if key.startswith("energy_head."):
            out[f"output_heads.energy.{key}"] = value
        elif key.startswith("force_head."):
            out[f"output_heads.forces.{key}"] = value
        else:
            out[key] = value
    return out


def convert_checkpoint(src: str | Path, dst: str | Path, dataset: str = "leignn", use_ema: bool = True,
                       trust_checkpoint: bool = False, overwrite: bool = False) -> Path:
    """Write the 2.x inference checkpoint of the 1.10 LEIGNN checkpoint ``src`` to ``dst``.

    ``dataset``: the task (dataset) name to give the 2.x model; ``FAIRChemCalculator(..., task_name=dataset)``
    selects it. Nothing is written unless the whole conversion succeeds; ``dst`` is replaced atomically,
    and only with ``overwrite`` when it exists (never when it is ``src`` itself).
    """
    src, dst = Path(src), Path(dst)
    refuse_input_as_output(dst, [src], flag="DST")
    check_output_file(dst, overwrite, flag="DST")
    checkpoint = read_checkpoint(src, trust_checkpoint, lambda config: is_leignn_config(config, 1))
    stored = read_format1(checkpoint, src, use_ema)
    model, _ = build_core(stored, src)
    core = model.state_dict()
    options = {**stored.options, **stored.graph}
    conservative = bool(options.get("regress_forces", True)) and not options.get("direct_forces", True)
    stress = conservative and bool(options.get("regress_stress", False))
    weights = state_dict_2x(core)
    inference = MLIPInferenceCheckpoint(
        model_config=hydra_config(options, conservative),
        model_state_dict=weights,
        ema_state_dict={**{f"module.{k}": v for k, v in weights.items()}, "n_averaged": torch.tensor(1)},
        tasks_config=tasks_config(checkpoint, src, dataset, conservative, stress),
    )
    with replace_file(dst) as partial:
        torch.save(inference, partial)
    return dst
