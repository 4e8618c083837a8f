"""The one reader of LEIGNN checkpoints: for inference (weights, EMA, normalizers, references) and
for the hydra conversion.

Reproduces what fairchem's trainer does for ``main.py --mode predict --checkpoint``: the model is
built from ``config["model"]`` through the registry, the state dict is matched for DDP's ``module.``
prefix, the EMA weights replace the raw ones when the trainer uses them (``optim.ema_decay`` set and
``ema`` stored, as in ``checkpoint.pt``; ``best_checkpoint.pt`` has them baked in), and outputs are
de-normalized with the stored normalizers and element references. Only what inference needs is
built: no trainer, no dataset.

Loading is safe by default: the file is unpickled with ``weights_only=True`` (tensors, containers,
numbers and strings, which is all a checkpoint written by fairchem 1.10's trainer holds), so a
crafted file cannot run code. A file that needs more is refused with one line naming what it needs;
``trust_checkpoint=True`` (``--trust-checkpoint`` on the command lines) loads it with full unpickling, only
for files from a source you trust.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fairchem.core.common.registry import registry
from fairchem.core.common.utils import load_state_dict, match_state_dict
from fairchem.core.models.base import HydraModel
from fairchem.core.modules.normalization.element_references import (
    LinearReferences,
    create_element_references,
)
from fairchem.core.modules.normalization.normalizer import Normalizer, create_normalizer
from torch import nn

from leignn_plugin.adapters.checkpoint_files import (
    CheckpointError,
    check_state_dict,
    copy_ema,
    not_leignn,
    stored_element_references,
    stored_normalizers,
)
from leignn_plugin.adapters.checkpoint_files import read_checkpoint as read_checkpoint_file
from leignn_plugin.core.elements import is_record_key
from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

HEAD_CLASSES = (LEIGNNEnergyHead, LEIGNNDirectForceHead, LEIGNNConservativeHead)
LEIGNN_CLASSES = (LEIGNN, LEIGNNBackbone, *HEAD_CLASSES)
# Every dotted path that stands for a LEIGNN class: where each lives now, and where they lived before
# the core/adapter split (``leignn_plugin.models``), as stored in existing configs and checkpoints.
DOTTED_PATHS = {
    **{f"{cls.__module__}.{cls.__name__}": cls for cls in LEIGNN_CLASSES},
    **{f"leignn_plugin.models.{cls.__name__}": cls for cls in LEIGNN_CLASSES},
    **{f"leignn_plugin.models.leignn.{cls.__name__}": cls for cls in (LEIGNN, *HEAD_CLASSES)},
    "leignn_plugin.models.backbone.LEIGNNBackbone": LEIGNNBackbone,
}


@dataclass
class LoadedPotential:
    """A LEIGNN model ready for inference and what turns its outputs into physical units."""

    path: Path
    model: nn.Module
    backbone: LEIGNNBackbone
    outputs: dict[str, dict]
    normalizers: dict[str, Normalizer] = field(default_factory=dict)
    elementrefs: dict[str, LinearReferences] = field(default_factory=dict)
    used_ema: bool = False

    @property
    def conservative(self) -> bool:
        return self.backbone.conservative

    @property
    def has_stress(self) -> bool:
        return self.backbone.conservative and self.backbone.regress_stress

    @property
    def trained_elements(self) -> tuple[int, ...] | None:
        """The atomic numbers of the training data (None for checkpoints written before the record)."""
        return self.backbone.trained_elements


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False, require_leignn: bool = True) -> dict:
    """The checkpoint at ``path`` (see :func:`leignn_plugin.adapters.checkpoint_files.read_checkpoint`),
    with ``require_leignn`` refusing any model this registry does not resolve to LEIGNN."""
    return read_checkpoint_file(path, trust_checkpoint, is_leignn if require_leignn else None)


def leignn_class(name: object) -> type | None:
    """The LEIGNN class ``name`` stands for: a short name fairchem's registry maps to one (looked up in
    its mapping) or the exact dotted path of one, current or legacy; None for any other name.

    Nothing is imported: the registry would import the module of any dotted path it is given, so a
    checkpoint naming ``leignn_evil.LEIGNN`` would run ``leignn_evil.py`` from the current folder.
    """
    if not isinstance(name, str):
        return None
    registered = registry.mapping["model_name_mapping"].get(name)
    if registered is not None:
        return registered if registered in LEIGNN_CLASSES else None
    return DOTTED_PATHS.get(name)


def is_leignn(model_config: Mapping) -> bool:
    """Whether the config names LEIGNN (registered name or dotted path), or a hydra whose backbone and
    every head are LEIGNN's; names are compared with the known ones, never imported."""
    name = model_config.get("name")
    if name != "hydra":
        return leignn_class(name) is LEIGNN
    backbone, heads = model_config.get("backbone"), model_config.get("heads")
    if not isinstance(backbone, Mapping) or leignn_class(backbone.get("model")) is not LEIGNNBackbone:
        return False
    return isinstance(heads, Mapping) and bool(heads) and all(
        isinstance(head, Mapping) and leignn_class(head.get("module")) in HEAD_CLASSES for head in heads.values())


def _check_keys(model: nn.Module, state: Mapping, path: Path) -> None:
    """The state dict names exactly the model's tensors (an element record may be missing: files from
    before it existed load with an unknown record); one line saying how it differs otherwise."""
    names, given = set(model.state_dict()), set(state)
    required = {k for k in names if not is_record_key(k)}
    missing, unexpected = sorted(required - given), sorted(given - names)
    if missing == sorted(required):
        raise CheckpointError(f"{path} holds no LEIGNN weights: none of its {len(given)} tensors belongs to the "
                              f"model in its config (e.g. '{sorted(given)[0]}')")
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. '{missing[0]}')"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')"] if unexpected else []
        raise CheckpointError(f"{path}: weights do not match the model in its config: {', '.join(parts)}")


def leignn_model(checkpoint: dict, path: Path, use_ema: bool = True) -> tuple[nn.Module, bool]:
    """The LEIGNN (or hydra on its backbone) of ``checkpoint`` with its weights, on CPU in float32,
    and whether the EMA weights were put in (``use_ema``, when the trainer kept them)."""
    config = checkpoint["config"]
    model_config = dict(config["model"])
    if not is_leignn(model_config):
        raise CheckpointError(not_leignn(path, model_config))
    # A hydra's finetune_config names the checkpoint fine-tuning started from: fairchem's HydraModel
    # would unpickle it in full, then discard it, since this config gives the backbone and the heads
    # and the state dict holds every weight. The model is the same without it, and nothing is read.
    model_config.pop("finetune_config", None)
    name = model_config.pop("name")
    try:
        model = (HydraModel if name == "hydra" else leignn_class(name))(**model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model from its config ({err})") from None

    check_state_dict(checkpoint["state_dict"], path)
    state = match_state_dict(model.state_dict(), checkpoint["state_dict"])
    _check_keys(model, state, path)
    try:
        load_state_dict(model, state, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        first = lines[1] if len(lines) > 1 else lines[0]  # the line after torch's "Error(s) in loading ..."
        raise CheckpointError(f"{path}: weights do not match the model in its config ({first[:300]})") from None

    ema_state = checkpoint.get("ema")
    used_ema = bool(use_ema and ema_state and (config.get("optim") or {}).get("ema_decay"))
    if used_ema:
        copy_ema(model, ema_state, path)
    return model, used_ema


def load_potential(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    use_ema: bool = True,
    trust_checkpoint: bool = False,
) -> LoadedPotential:
    """Build the LEIGNN of a fairchem checkpoint on ``device`` in ``dtype``, in eval mode.

    The backbone is switched to precomputed graphs (``otf_graph=False``): the caller supplies
    ``edge_index``/``cell_offsets`` (see :class:`leignn_plugin.graph.VerletList`). ``trust_checkpoint``
    loads a file that needs full unpickling (only for files from a source you trust).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    config = checkpoint["config"]
    model, used_ema = leignn_model(checkpoint, path, use_ema)
    backbones = [m for m in model.modules() if isinstance(m, LEIGNNBackbone)]
    if len(backbones) != 1:
        raise CheckpointError(f"{path}: expected one LEIGNN backbone in the model, found {len(backbones)}")
    backbone = backbones[0]
    backbone.otf_graph = False
    backbone.element_record.source = str(path)
    model = model.to(device=device, dtype=dtype).eval()

    normalizers = {key: create_normalizer(state_dict=state).to(device)
                   for key, state in stored_normalizers(checkpoint, path).items()}
    elementrefs = {key: create_element_references(state_dict={"element_references": values}).to(device)
                   for key, values in stored_element_references(checkpoint, path).items()}
    outputs = dict(config.get("outputs") or {"energy": {"level": "system"}, "forces": {"level": "atom"}})
    return LoadedPotential(path=path, model=model, backbone=backbone, outputs=outputs,
                           normalizers=normalizers, elementrefs=elementrefs, used_ema=used_ema)
