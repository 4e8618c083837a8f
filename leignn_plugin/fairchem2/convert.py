"""A LEIGNN checkpoint of the fairchem 1.10 host as a fairchem 2.x inference checkpoint.

One trained model serves both hosts: the 1.10 checkpoint (``main.py`` training, model ``leignn``) is
read weights-only by the project's one checkpoint reader, its EMA weights are put in place in the
order fairchem 1.10's ``ExponentialMovingAverage`` keeps them (the core potential's parameter order),
and the weights, normalizers and element references become a ``HydraModel`` on
:class:`~leignn_plugin.fairchem2.models.LEIGNNBackbone` with tasks ``energy``, ``forces`` (and
``stress`` for conservative models) that de-normalize exactly as the 1.10 trainer does:
E = E_model * rmsd_E + mean_E + sum of element references, F = F_model * rmsd_F + mean_F.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

from leignn_plugin.adapters.checkpoint_files import (
    LEGACY_TARGET_NAMES,
    CheckpointError,
    copy_ema,
    read_checkpoint,
)
from leignn_plugin.core.model import LEIGNNPotential

BACKBONE = "leignn_plugin.fairchem2.models.LEIGNNBackbone"
HEADS = {
    "energy": "leignn_plugin.fairchem2.models.LEIGNNEnergyHead",
    "forces": "leignn_plugin.fairchem2.models.LEIGNNDirectForceHead",
    "conservative": "leignn_plugin.fairchem2.models.LEIGNNConservativeHead",
}
# options of the 1.10 adapter that fairchem 2.x has no use for (graphs are always searched on the fly,
# periodicity comes with every structure)
HOST1_ONLY_OPTIONS = ("use_pbc", "use_pbc_single", "otf_graph")


def is_leignn_1x(model_config: dict) -> bool:
    """Whether a 1.10 model config names LEIGNN by its registered name or dotted path (the converter's
    input; hydra checkpoints of 1.10 are converted by first training or converting to ``leignn``)."""
    name = model_config.get("name", "")
    return name == "leignn" or (name.startswith("leignn_plugin.") and name.endswith(".LEIGNN"))


def core_options(model_config: dict) -> dict:
    """The representation's and graph options of a 1.10 ``leignn`` model config (1.10's
    ``graph_method: fairchem`` becomes ``vesin``, which gives the same edges and exists in every host)."""
    options = {k: v for k, v in model_config.items() if k != "name" and k not in HOST1_ONLY_OPTIONS}
    if options.get("graph_method") == "fairchem":
        options["graph_method"] = "vesin"
    return options


def _core_weights(checkpoint: dict, path: Path, options: dict, use_ema: bool) -> dict[str, torch.Tensor]:
    """The 1.10 model's weights (EMA put in when kept and asked for), named as in the core potential."""
    graph_only = ("enforce_max_neighbors_strictly", "graph_method", "speed_paths", "min_distance")
    potential = LEIGNNPotential(**{k: v for k, v in options.items() if k not in graph_only})
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    expected = set(potential.state_dict())
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(f"{path}: weights do not match the LEIGNN in its config "
                              f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. "
                              f"'{(missing or unexpected)[0]}')")
    try:
        potential.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = [line.strip() for line in str(err).splitlines() if line.strip()][-1]
        raise CheckpointError(f"{path}: weights do not match the LEIGNN in its config ({first[:300]})") from None
    ema = checkpoint.get("ema")
    if use_ema and ema and (checkpoint["config"].get("optim") or {}).get("ema_decay"):
        copy_ema(potential, ema, path)
    return potential.state_dict()


def _normalizer(checkpoint: dict, target: str) -> dict:
    """The 2.x normalizer config of ``target`` (mean 0, rmsd 1 when the 1.10 run did not normalize)."""
    stored = {LEGACY_TARGET_NAMES.get(k, k): v for k, v in (checkpoint.get("normalizers") or {}).items()}
    found = stored.get(target) or {}
    mean = found.get("mean", 0.0)
    rmsd = found.get("rmsd", found.get("std", 1.0))
    return {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
            "mean": float(mean), "rmsd": float(rmsd)}


def _task(name: str, level: str, dim: list[int], checkpoint: dict, dataset: str, normalizer_of: str) -> dict:
    return {
        "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
        "name": name,
        "level": level,
        "property": name,
        "out_spec": {"dim": dim, "dtype": "float32"},
        "normalizer": _normalizer(checkpoint, normalizer_of),
        "datasets": [dataset],
        "train_on_free_atoms": True,
        "eval_on_free_atoms": True,
    }


def tasks_config(checkpoint: dict, dataset: str, conservative: bool, stress: bool) -> list[dict]:
    """The 2.x tasks reproducing the 1.10 trainer's de-normalization (stress uses the energy's scale)."""
    energy = _task("energy", "system", [1], checkpoint, dataset, "energy")
    refs = (checkpoint.get("elementrefs") or {}).get("energy")
    if refs:
        values = refs["element_references"].double().flatten().tolist()
        energy["element_references"] = {
            "_target_": "fairchem.core.modules.normalization.element_references.ElementReferences",
            "element_references": {"_target_": "torch.DoubleTensor", "_args_": [values]},
        }
    tasks = [energy, _task("forces", "atom", [3], checkpoint, dataset, "forces")]
    if conservative and stress:
        stress_task = _task("stress", "system", [1, 9], checkpoint, dataset, "energy")
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
                       trust_checkpoint: bool = False) -> Path:
    """Write the 2.x inference checkpoint of the 1.10 LEIGNN checkpoint ``src`` to ``dst``.

    ``dataset``: the task (dataset) name to give the 2.x model; ``FAIRChemCalculator(..., task_name=dataset)``
    selects it. Nothing is written unless the whole conversion succeeds; ``dst`` is replaced atomically.
    """
    src, dst = Path(src), Path(dst)
    checkpoint = read_checkpoint(src, trust_checkpoint, is_leignn_1x)
    options = core_options(dict(checkpoint["config"]["model"]))
    try:
        core = _core_weights(checkpoint, src, options, use_ema)
    except (TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{src}: cannot build LEIGNN from its config ({err})") from None
    conservative = bool(options.get("regress_forces", True)) and not options.get("direct_forces", True)
    stress = conservative and bool(options.get("regress_stress", False))
    weights = state_dict_2x(core)
    inference = MLIPInferenceCheckpoint(
        model_config=hydra_config(options, conservative),
        model_state_dict=weights,
        ema_state_dict={**{f"module.{k}": v for k, v in weights.items()}, "n_averaged": torch.tensor(1)},
        tasks_config=tasks_config(checkpoint, dataset, conservative, stress),
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    torch.save(inference, partial)
    os.replace(partial, dst)
    return dst
