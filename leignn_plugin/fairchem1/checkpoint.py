"""The one reader of LEIGNN checkpoints: for inference (weights, EMA, normalizers, references) and
for the hydra conversion.

Reproduces what fairchem's trainer does for ``main.py --mode predict --checkpoint``: the model is
built from ``config["model"]`` through the registry, the state dict is matched for DDP's ``module.``
prefix, the EMA weights replace the raw ones when the trainer uses them (``optim.ema_decay`` set and
``ema`` stored, as in ``checkpoint.pt``; ``best_checkpoint.pt`` has them baked in), and outputs are
de-normalized with the stored normalizers and element references. Only what inference needs is
built: no trainer, no dataset.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fairchem.core.common.registry import registry
from fairchem.core.common.utils import load_state_dict, match_state_dict
from fairchem.core.modules.normalization.element_references import (
    LinearReferences,
    create_element_references,
)
from fairchem.core.modules.normalization.normalizer import Normalizer, create_normalizer
from torch import nn

from leignn_plugin.fairchem1.models import LEIGNN, LEIGNNBackbone

LEGACY_TARGET_NAMES = {"target": "energy", "grad_target": "forces"}


class CheckpointError(ValueError):
    """A checkpoint that cannot serve as a LEIGNN potential; the message is one line."""


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


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path`` as a dict with ``config`` (naming a model) and ``state_dict``."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, AttributeError) as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path} is not a fairchem checkpoint (no 'config' and 'state_dict' entries)")
    model_config = checkpoint["config"].get("model")
    if not isinstance(model_config, dict) or "name" not in model_config:
        raise CheckpointError(f"{path} has no 'model: {{name: ...}}' in its config")
    return checkpoint


def _is_leignn(model_config: dict) -> bool:
    """Whether the config names LEIGNN (registered name, dotted path, or a hydra on its backbone)."""
    name = model_config["name"]
    if name == "hydra":
        backbone = (model_config.get("backbone") or {}).get("model")
        return backbone is not None and _resolves_to(backbone, LEIGNNBackbone)
    return _resolves_to(name, LEIGNN)


def _resolves_to(name: str, cls: type) -> bool:
    try:
        found = registry.get_model_class(name)
    except RuntimeError:
        return False
    return isinstance(found, type) and issubclass(found, cls)


def _copy_ema(model: nn.Module, ema_state: dict, path: Path) -> None:
    """Put the EMA shadow weights in place, in the order fairchem's ExponentialMovingAverage keeps."""
    params = [p for p in model.parameters() if p.requires_grad]
    shadow = ema_state.get("shadow_params") or []
    if len(shadow) != len(params):
        raise CheckpointError(f"{path}: the EMA holds {len(shadow)} tensors but the model has {len(params)} parameters")
    with torch.no_grad():
        for param, value in zip(params, shadow):
            if param.shape != value.shape:
                raise CheckpointError(f"{path}: EMA tensor of shape {tuple(value.shape)} does not fit a parameter "
                                      f"of shape {tuple(param.shape)}")
            param.copy_(value)


def leignn_model(checkpoint: dict, path: Path, use_ema: bool = True) -> tuple[nn.Module, bool]:
    """The LEIGNN (or hydra on its backbone) of ``checkpoint`` with its weights, on CPU in float32,
    and whether the EMA weights were put in (``use_ema``, when the trainer kept them)."""
    config = checkpoint["config"]
    model_config = dict(config["model"])
    if not _is_leignn(model_config):
        raise CheckpointError(f"{path} holds a '{model_config['name']}' model, not LEIGNN "
                              "(expected leignn, a dotted path to LEIGNN, or hydra on leignn_backbone)")
    name = model_config.pop("name")
    try:
        model = registry.get_model_class(name)(**model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model from its config ({err})") from None

    state = match_state_dict(model.state_dict(), checkpoint["state_dict"])
    try:
        load_state_dict(model, state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: weights do not match the model in its config ({first[:300]})") from None

    ema_state = checkpoint.get("ema")
    used_ema = bool(use_ema and ema_state and (config.get("optim") or {}).get("ema_decay"))
    if used_ema:
        _copy_ema(model, ema_state, path)
    return model, used_ema


def load_potential(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    use_ema: bool = True,
) -> LoadedPotential:
    """Build the LEIGNN of a fairchem checkpoint on ``device`` in ``dtype``, in eval mode.

    The backbone is switched to precomputed graphs (``otf_graph=False``): the caller supplies
    ``edge_index``/``cell_offsets`` (see :class:`leignn_plugin.graph.VerletList`).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    config = checkpoint["config"]
    model, used_ema = leignn_model(checkpoint, path, use_ema)
    backbones = [m for m in model.modules() if isinstance(m, LEIGNNBackbone)]
    if len(backbones) != 1:
        raise CheckpointError(f"{path}: expected one LEIGNN backbone in the model, found {len(backbones)}")
    backbone = backbones[0]
    backbone.otf_graph = False
    model = model.to(device=device, dtype=dtype).eval()

    normalizers = {}
    for key, state_dict in (checkpoint.get("normalizers") or {}).items():
        normalizers[LEGACY_TARGET_NAMES.get(key, key)] = create_normalizer(state_dict=state_dict).to(device)
    elementrefs = {
        key: create_element_references(state_dict=state_dict).to(device)
        for key, state_dict in (checkpoint.get("elementrefs") or {}).items()
    }
    outputs = dict(config.get("outputs") or {"energy": {"level": "system"}, "forces": {"level": "atom"}})
    return LoadedPotential(path=path, model=model, backbone=backbone, outputs=outputs,
                           normalizers=normalizers, elementrefs=elementrefs, used_ema=used_ema)
