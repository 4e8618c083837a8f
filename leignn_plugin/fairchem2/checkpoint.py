"""fairchem 2.x inference checkpoints of LEIGNN: checked safely, then loaded by fairchem's predict unit.

fairchem's ``load_predict_unit`` unpickles the whole file (``weights_only=False``), then has Hydra
instantiate every ``_target_`` of the stored model and task configs and its registry resolve the
backbone's ``model`` and each head's ``module`` (a dotted path there imports that module). Before it
does, the file is read here with the project's one loader, weights-only, allowing only the classes an
inference checkpoint holds (the ``MLIPInferenceCheckpoint`` dataclass and OmegaConf containers), and
its configs are checked: the backbone and heads must be LEIGNN's, named as registered or by their exact
dotted paths (compared as strings, never imported); every ``_target_`` (in lists, nested dicts and
``_args_`` too) must be one of the fairchem classes a LEIGNN checkpoint stores or LEIGNN's own; no value
may be an OmegaConf interpolation (a resolver such as ``oc.create`` could build a new ``_target_``); and
no ``finetune_config`` may name another file for fairchem to load. While fairchem then builds the
predict unit, its ``torch.load`` calls go through the same loader and check, so what fairchem builds is
what was checked. A refusal is one :class:`CheckpointError` line naming the file and the object;
``trust_checkpoint`` skips the unpickling and config restrictions (only for files from a source you
trust). A file that is not a LEIGNN model gets one line saying what it is (a fairchem 1.x checkpoint
names the converter).
"""

from __future__ import annotations

import collections
import contextlib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode

from leignn_plugin.adapters.checkpoint_files import CheckpointError, check_state_dict, load_torch_file
from leignn_plugin.checkpoints.names import head_roles, names_of, role_of
from leignn_plugin.checkpoints.stored import (
    HostFormat,
    StoredModel,
    head_weights,
    register_format,
    split_options,
)
from leignn_plugin.fairchem2.models import (
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

INFERENCE_GLOBALS = (MLIPInferenceCheckpoint, DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode,
                     typing.Any, dict, list, int, collections.defaultdict)
HEAD_CLASSES = (LEIGNNEnergyHead, LEIGNNDirectForceHead, LEIGNNConservativeHead)
HYDRA_MODEL = "fairchem.core.models.base.HydraModel"
# What fairchem instantiates from a LEIGNN inference checkpoint (a trained one and a converted one): the
# model, its tasks with their output specs, normalizers, element references (a tensor of the values) and
# losses. Each only builds a module or a tensor from numbers.
FAIRCHEM_TARGETS = frozenset({
    HYDRA_MODEL,
    "fairchem.core.units.mlip_unit.mlip_unit.Task",
    "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec",
    "fairchem.core.modules.normalization.normalizer.Normalizer",
    "fairchem.core.modules.normalization.element_references.ElementReferences",
    "torch.DoubleTensor",
    *(f"fairchem.core.modules.loss.{loss}"
      for loss in ("DDPMTLoss", "DDPLoss", "MAELoss", "MSELoss", "PerAtomMAELoss", "L2NormLoss")),
})


def dotted_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: object) -> object:
    """OmegaConf containers as plain ones, interpolations left unresolved."""
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def _refuse_unsafe(value: object, where: str, path: Path, allowed: frozenset[str]) -> None:
    """Refuse, with one line, anything in the stored config ``value`` (at ``where``) that would have
    fairchem run code or read another file while loading it."""
    value = _plain(value)
    if isinstance(value, str) and "${" in value:
        raise CheckpointError(f"refused to load {path}: {where} holds the OmegaConf interpolation {value!r}, "
                              "which fairchem would resolve while loading; a LEIGNN checkpoint stores plain values")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_unsafe(item, f"{where}[{index}]", path, allowed)
    if not isinstance(value, Mapping):
        return
    target = value.get("_target_")
    if "_target_" in value and target not in allowed:
        raise CheckpointError(f"refused to load {path}: its stored config would have fairchem call {target} (at "
                              f"{where}), which a LEIGNN checkpoint never needs")
    if "finetune_config" in value:
        raise CheckpointError(f"refused to load {path}: {where}.finetune_config names another checkpoint for "
                              "fairchem to load; an inference checkpoint holds all its weights itself")
    for key, item in value.items():
        _refuse_unsafe(key, f"{where} (a key)", path, allowed)
        _refuse_unsafe(item, f"{where}.{key}", path, allowed)


def _check_leignn(model_config: Mapping, path: Path) -> None:
    """The backbone and every head are LEIGNN's, by name (``checkpoints.names``: compared, not imported)."""
    settings = model_config.get("backbone")
    backbone = settings.get("model") if isinstance(settings, Mapping) else None
    if role_of(backbone, 2) != "backbone":
        raise CheckpointError(f"{path} holds a '{backbone}' backbone, not LEIGNN (expected "
                              f"{' or '.join(names_of('backbone', 2))})")
    heads = model_config.get("heads")
    if not isinstance(heads, Mapping) or not heads:
        raise CheckpointError(f"{path}: its model config has no heads")
    names = [name for role in ("energy", "forces", "conservative") for name in names_of(role, 2)]
    for head, settings in heads.items():
        module = settings.get("module") if isinstance(settings, Mapping) else None
        if role_of(module, 2) not in ("energy", "forces", "conservative"):
            raise CheckpointError(f"{path} holds a '{module}' head (model_config.heads.{head}.module), not one of "
                                  f"LEIGNN's ({', '.join(names)})")


ESEN_BACKBONE = "fairchem.core.models.uma.escn_md.eSCNMDBackbone"
ESEN_HEADS = frozenset({"fairchem.core.models.uma.escn_md.MLP_Energy_Head",
                        "fairchem.core.models.uma.escn_md.Linear_Force_Head"})
"""The baseline ``leignn-bench accuracy`` trains beside LEIGNN (``configs/fairchem2/model/esen_sm.yaml``)."""


def _check_baseline(model_config: Mapping, path: Path) -> None:
    """The backbone and heads are those of the eSCN-MD baseline, by dotted path."""
    settings = model_config.get("backbone")
    backbone = settings.get("model") if isinstance(settings, Mapping) else None
    heads = model_config.get("heads") if isinstance(model_config.get("heads"), Mapping) else {}
    modules = {h.get("module") if isinstance(h, Mapping) else h for h in heads.values()}
    if backbone != ESEN_BACKBONE or not heads or not modules <= ESEN_HEADS:
        raise CheckpointError(f"{path} is not the eSCN-MD baseline ({ESEN_BACKBONE} with "
                              f"{' and '.join(sorted(ESEN_HEADS))}); it holds a '{backbone}' backbone")


def check_inference_checkpoint(saved: object, path: Path, trust_checkpoint: bool = False,
                               baseline: bool = False) -> MLIPInferenceCheckpoint:
    """``saved`` (what ``path`` unpickled to), refused with one line unless it is a LEIGNN inference
    checkpoint (``baseline``: one of the eSCN-MD baseline) whose configs are safe to hand to fairchem
    (unless ``trust_checkpoint``)."""
    if isinstance(saved, dict) and "config" in saved and "state_dict" in saved:
        raise CheckpointError(f"{path} is a fairchem 1.x checkpoint; convert it first with "
                              f"leignn-fairchem2 convert {path} OUT.pt")
    if not isinstance(saved, MLIPInferenceCheckpoint):
        raise CheckpointError(f"{path} is not a fairchem 2.x inference checkpoint (it holds a "
                              f"{type(saved).__name__})")
    try:
        model_config, tasks_config = _plain(saved.model_config), _plain(saved.tasks_config)
    except Exception as err:  # OmegaConf containers whose unpickled insides are not what OmegaConf wrote
        raise CheckpointError(f"{path}: its stored configs cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(model_config, Mapping):
        raise CheckpointError(f"{path} holds no model config (a {type(model_config).__name__})")
    (_check_baseline if baseline else _check_leignn)(model_config, path)
    if not trust_checkpoint:
        allowed = FAIRCHEM_TARGETS | {dotted_path(cls) for cls in (LEIGNNBackbone, *HEAD_CLASSES)}
        _refuse_unsafe(model_config, "model_config", path, allowed)
        _refuse_unsafe(tasks_config, "tasks_config", path, allowed)
        if model_config.get("_target_") != HYDRA_MODEL:
            raise CheckpointError(f"{path}: its model config builds {model_config.get('_target_')}, not fairchem's "
                                  "HydraModel")
    check_state_dict(saved.model_state_dict, path)
    return saved


def read_inference_checkpoint(path: str | Path, trust_checkpoint: bool = False,
                              baseline: bool = False) -> MLIPInferenceCheckpoint:
    """The 2.x inference checkpoint at ``path``, refused with one line unless it is a LEIGNN model (or
    the eSCN-MD baseline) whose stored configs fairchem can instantiate without running anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    saved = load_torch_file(path, trusted=trust_checkpoint, extra_globals=INFERENCE_GLOBALS)
    return check_inference_checkpoint(saved, path, trust_checkpoint, baseline)


def checked_load(baseline: bool = False) -> typing.Callable[..., Any]:
    """A ``torch.load`` that reads weights only and refuses an inference checkpoint failing
    :func:`check_inference_checkpoint`."""

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
             **kwargs: Any) -> Any:
        saved = load_torch_file(f, map_location=map_location, extra_globals=INFERENCE_GLOBALS)
        if isinstance(saved, MLIPInferenceCheckpoint):
            check_inference_checkpoint(saved, Path(f) if isinstance(f, (str, Path)) else f, baseline=baseline)
        return saved

    load.checked = True
    return load


@contextlib.contextmanager
def checked_loads(baseline: bool = False) -> Iterator[None]:
    """While inside, every ``torch.load`` in this process is :func:`checked_load`'s: fairchem's predict unit
    loads the file again itself, and this way the object it builds from is the one checked."""
    original = torch.load
    torch.load = checked_load(baseline)
    try:
        yield
    finally:
        torch.load = original


def load_predict_unit(path: str | Path, device: str = "cpu", inference_settings: object = "batch",
                      trust_checkpoint: bool = False, baseline: bool = False):
    """fairchem's predict unit of the LEIGNN checkpoint ``path`` (``baseline``: of the eSCN-MD baseline),
    checked first, and built under :func:`checked_loads` unless ``trust_checkpoint`` (see above).

    ``inference_settings``: fairchem's preset name or an ``InferenceSettings``; ``batch`` (the default
    here) runs the model eagerly, while fairchem's ``default`` compiles it, which on CPU costs about a
    minute at the first call. A conservative model gives the stress without any setting (its backbone
    adds the task).
    """
    from fairchem.core.units.mlip_unit import load_predict_unit as fairchem_load_predict_unit

    read_inference_checkpoint(path, trust_checkpoint, baseline)
    with contextlib.nullcontext() if trust_checkpoint else checked_loads(baseline):
        unit = fairchem_load_predict_unit(str(path), inference_settings=inference_settings, device=device)
    for module in unit.model.modules():  # the unseen-element warning names the file, as the 1.10 loader's does
        if isinstance(module, LEIGNNBackbone):
            module.element_record.source = str(path)
    return unit


def _number(value: object, where: str, path: Path) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not torch.isfinite(torch.tensor(value)):
        raise CheckpointError(f"{path}: {where} is {value!r}, not a finite number")
    return torch.tensor(float(value), dtype=torch.float64)


def reference_values(stored: object) -> torch.Tensor | None:
    """The per-element values of a task's ``element_references`` config (fairchem's ``ElementReferences``
    of a ``torch.DoubleTensor``, as configs and inference checkpoints write it), float64 by atomic
    number; None when it holds no 1-d list of finite numbers."""
    values = stored.get("element_references") if isinstance(stored, Mapping) else None
    if isinstance(values, Mapping):
        args = values.get("_args_")
        values = args[0] if isinstance(args, (list, tuple)) and len(args) == 1 else None
    try:
        values = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    if values.ndim != 1 or not bool(torch.isfinite(values).all()):
        return None
    return values


def _references(stored: object, where: str, path: Path) -> torch.Tensor:
    values = reference_values(stored)
    if values is None:
        raise CheckpointError(f"{path}: {where} holds no 1-d list of finite numbers, one per atomic number")
    return values


def task_scales(tasks: object, path: Path) -> tuple[dict, dict]:
    """``(normalizers, references)`` of the stored tasks, by property (energy, forces, stress): the one
    dataset's tasks (a checkpoint of several datasets is refused, naming them)."""
    tasks = [t for t in tasks if isinstance(t, Mapping)] if isinstance(tasks, (list, tuple)) else []
    datasets = sorted({str(d) for t in tasks for d in (t.get("datasets") or [])})
    if len(datasets) > 1:
        raise CheckpointError(f"{path} holds tasks of several datasets ({', '.join(datasets)}); the project's "
                              "calculator reads one: use FAIRChemCalculator with task_name")
    normalizers, references = {}, {}
    for index, task in enumerate(tasks):
        prop, where = task.get("property"), f"tasks_config[{index}]"
        normalizer = task.get("normalizer")
        if isinstance(normalizer, Mapping):
            normalizers[prop] = (_number(normalizer.get("mean", 0.0), f"{where}.normalizer.mean", path),
                                 _number(normalizer.get("rmsd", 1.0), f"{where}.normalizer.rmsd", path))
        if task.get("element_references") is not None:
            references[prop] = _references(task["element_references"], f"{where}.element_references", path)
    return normalizers, references


def read_stored_model(saved: object, path: Path, trust_checkpoint: bool, use_ema: bool) -> StoredModel | None:
    """A LEIGNN inference checkpoint in the core potential's terms (None for other objects): as fairchem's
    predict unit builds it, with the EMA weights, and a conservative model gives the stress (its backbone
    adds the stress task for fairchem the same way)."""
    if not isinstance(saved, MLIPInferenceCheckpoint):
        return None
    check_inference_checkpoint(saved, path, trust_checkpoint)
    model_config = _plain(saved.model_config)
    heads = head_roles(model_config["heads"], 2)
    options, graph = split_options({k: v for k, v in model_config["backbone"].items() if k != "model"})
    if options.get("regress_forces", True) and not options.get("direct_forces", True):
        options["regress_stress"] = True
    state = head_weights(dict(saved.model_state_dict), heads)
    ema = None
    if use_ema and isinstance(saved.ema_state_dict, Mapping) and saved.ema_state_dict:
        ema = head_weights({k.removeprefix("module."): v for k, v in saved.ema_state_dict.items()
                            if k != "n_averaged"}, heads)
        check_state_dict(ema, path)
    normalizers, references = task_scales(_plain(saved.tasks_config), path)
    return StoredModel(options=options, graph=graph, state=state, ema=ema, normalizers=normalizers,
                       references=references, kind="fairchem 2.x inference checkpoint")


register_format(HostFormat("fairchem 2.x inference checkpoint", INFERENCE_GLOBALS, read_stored_model))
