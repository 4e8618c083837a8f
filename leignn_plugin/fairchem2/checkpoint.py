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
from fairchem.core.common.registry import registry
from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode

from leignn_plugin.adapters.checkpoint_files import CheckpointError, check_state_dict, load_torch_file
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


def leignn_names(classes: tuple[type, ...]) -> tuple[str, ...]:
    """The names that stand for ``classes`` in a config: their short names in fairchem's registry (looked
    up in its mapping, so nothing is imported) and their exact dotted paths."""
    registered = [name for name, cls in registry.mapping["model_name_mapping"].items() if cls in classes]
    return (*sorted(registered), *(dotted_path(cls) for cls in classes))


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
    """The backbone and every head are LEIGNN's, by name (compared, not imported)."""
    settings = model_config.get("backbone")
    backbone = settings.get("model") if isinstance(settings, Mapping) else None
    backbones = leignn_names((LEIGNNBackbone,))
    if backbone not in backbones:
        raise CheckpointError(f"{path} holds a '{backbone}' backbone, not LEIGNN (expected {' or '.join(backbones)})")
    heads = model_config.get("heads")
    if not isinstance(heads, Mapping) or not heads:
        raise CheckpointError(f"{path}: its model config has no heads")
    names = leignn_names(HEAD_CLASSES)
    for head, settings in heads.items():
        module = settings.get("module") if isinstance(settings, Mapping) else None
        if module not in names:
            raise CheckpointError(f"{path} holds a '{module}' head (model_config.heads.{head}.module), not one of "
                                  f"LEIGNN's ({', '.join(names)})")


def check_inference_checkpoint(saved: object, path: Path, trust_checkpoint: bool = False) -> MLIPInferenceCheckpoint:
    """``saved`` (what ``path`` unpickled to), refused with one line unless it is a LEIGNN inference
    checkpoint whose configs are safe to hand to fairchem (unless ``trust_checkpoint``)."""
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
    _check_leignn(model_config, path)
    if not trust_checkpoint:
        allowed = FAIRCHEM_TARGETS | {dotted_path(cls) for cls in (LEIGNNBackbone, *HEAD_CLASSES)}
        _refuse_unsafe(model_config, "model_config", path, allowed)
        _refuse_unsafe(tasks_config, "tasks_config", path, allowed)
        if model_config.get("_target_") != HYDRA_MODEL:
            raise CheckpointError(f"{path}: its model config builds {model_config.get('_target_')}, not fairchem's "
                                  "HydraModel")
    check_state_dict(saved.model_state_dict, path)
    return saved


def read_inference_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> MLIPInferenceCheckpoint:
    """The 2.x inference checkpoint at ``path``, refused with one line unless it is a LEIGNN model whose
    stored configs fairchem can instantiate without running anything else (see above)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    saved = load_torch_file(path, trusted=trust_checkpoint, extra_globals=INFERENCE_GLOBALS)
    return check_inference_checkpoint(saved, path, trust_checkpoint)


@contextlib.contextmanager
def checked_loads() -> Iterator[None]:
    """While inside, every ``torch.load`` in this process reads weights only and an inference checkpoint
    it returns has passed :func:`check_inference_checkpoint`: fairchem's predict unit loads the file
    again itself, and this way the object it builds from is the one checked."""

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
             **kwargs: Any) -> Any:
        saved = load_torch_file(f, map_location=map_location, extra_globals=INFERENCE_GLOBALS)
        if isinstance(saved, MLIPInferenceCheckpoint):
            check_inference_checkpoint(saved, Path(f) if isinstance(f, (str, Path)) else f)
        return saved

    original = torch.load
    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def load_predict_unit(path: str | Path, device: str = "cpu", inference_settings: object = "batch",
                      trust_checkpoint: bool = False):
    """fairchem's predict unit of the LEIGNN checkpoint ``path`` (checked first, and built under
    :func:`checked_loads` unless ``trust_checkpoint``, see above).

    ``inference_settings``: fairchem's preset name or an ``InferenceSettings``; ``batch`` (the default
    here) runs the model eagerly, while fairchem's ``default`` compiles it, which on CPU costs about a
    minute at the first call. A conservative model gives the stress without any setting (its backbone
    adds the task).
    """
    from fairchem.core.units.mlip_unit import load_predict_unit as fairchem_load_predict_unit

    read_inference_checkpoint(path, trust_checkpoint)
    with contextlib.nullcontext() if trust_checkpoint else checked_loads():
        return fairchem_load_predict_unit(str(path), inference_settings=inference_settings, device=device)
