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

import contextlib
import pickle
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fairchem.core.common.registry import registry
from fairchem.core.common.utils import load_state_dict, match_state_dict
from fairchem.core.modules.normalization.element_references import (
    LinearReferences,
    create_element_references,
)
from fairchem.core.modules.normalization.normalizer import Normalizer, create_normalizer
from torch import nn

from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.models import LEIGNN, LEIGNNBackbone

LEGACY_TARGET_NAMES = {"target": "energy", "grad_target": "forces"}


# torch.load as torch defines it, whatever a caller (``safe_load.safe_loading``) puts in its place.
_TORCH_LOAD = torch.serialization.load
TRUST_HINT = ("load it with --trust-checkpoint (trust_checkpoint=True in Python) only if it comes from a "
              "source you trust")
# What a file may fail with while it is opened and unpickled (a truncated zip, a legacy pickle cut
# short, garbage bytes, a class a trusted file names that no longer exists).
_UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, AttributeError,
               ImportError, KeyError, IndexError, TypeError, ValueError, struct.error)


class CheckpointError(UsageError, ValueError):
    """A checkpoint that cannot serve as a LEIGNN potential, or a file refused by the safe load; the
    message is one line naming the file."""


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


def _refusal(path: object, err: pickle.UnpicklingError) -> str:
    """One line for a file the weights-only unpickler stopped at, naming the global it met, if any
    (garbage bytes stop it too, at an opcode it does not know)."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", str(err))
    if found:
        return (f"refused to load {path}: it needs the Python object {found.group(1)}, and unpickling that "
                f"could run code; {TRUST_HINT}")
    detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()
    return (f"{path} is not a readable torch checkpoint (a weights-only load stops at: "
            f"{detail[0] if detail else type(err).__name__}); if it holds more than weights, {TRUST_HINT}")


@contextlib.contextmanager
def _allowed_globals(extra: Sequence[Any]) -> Iterator[None]:
    """``extra`` allowed to the weights-only unpickler for one load only: torch 2.4's
    ``add_safe_globals`` is process-wide and has no scoped form, so the earlier list is put back."""
    if not extra:
        yield
        return
    before = list(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals(list(extra))
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def load_torch_file(source: Any, map_location: Any = "cpu", trusted: bool = False,
                    extra_globals: Sequence[Any] = (), **kwargs: Any) -> Any:
    """``torch.load`` of ``source`` with ``weights_only=True`` (also allowing ``extra_globals``) unless
    ``trusted``.

    Every way the load can fail becomes a one-line :class:`CheckpointError` naming the file: a
    refused pickle (with the global torch names), a truncated or corrupt file, an unreadable one.
    ``safe_load.safe_loading`` routes fairchem's own ``torch.load`` calls through here as well.
    Checkpoints written by fairchem 1.10's trainer need no extra globals.
    """
    try:
        with _allowed_globals(() if trusted else extra_globals):
            return _TORCH_LOAD(source, map_location=map_location, weights_only=not trusted, **kwargs)
    except pickle.UnpicklingError as err:
        if not trusted and str(err).startswith("Weights only load failed"):
            raise CheckpointError(_refusal(source, err)) from None
        raise CheckpointError(_unreadable(source, err)) from None
    except OSError as err:
        raise CheckpointError(f"cannot read {source}: {err.strerror or err}") from None
    except _UNREADABLE as err:
        raise CheckpointError(_unreadable(source, err)) from None


def _unreadable(source: object, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"{source} is not a readable torch checkpoint, perhaps truncated or corrupt ({type(err).__name__}: {first})"


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False, require_leignn: bool = True) -> dict:
    """The checkpoint at ``path`` as a dict with ``config`` (naming a model) and ``state_dict``.

    Loaded weights-only unless ``trust_checkpoint``. With ``require_leignn`` the model must be LEIGNN (or hydra
    on its backbone); either way the state dict must hold tensors, so an empty or foreign file is
    refused here, before anything is built or written from it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    checkpoint = load_torch_file(path, trusted=trust_checkpoint)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path} is not a fairchem checkpoint (no 'config' and 'state_dict' entries)")
    config = checkpoint["config"]
    model_config = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_config, dict) or not isinstance(model_config.get("name"), str):
        raise CheckpointError(f"{path} has no 'model: {{name: ...}}' in its config")
    if require_leignn and not is_leignn(model_config):
        raise CheckpointError(_not_leignn(path, model_config))
    _check_state_dict(checkpoint["state_dict"], path)
    return checkpoint


def _not_leignn(path: Path, model_config: dict) -> str:
    return (f"{path} holds a '{model_config['name']}' model, not LEIGNN "
            "(expected leignn, a dotted path to LEIGNN, or hydra on leignn_backbone)")


def _check_state_dict(state: object, path: Path) -> None:
    """A state dict is a non-empty mapping of names to tensors."""
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path} holds no weights (its state_dict is empty or not a mapping)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")


def is_leignn(model_config: dict) -> bool:
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


def _check_keys(model: nn.Module, state: Mapping, path: Path) -> None:
    """The state dict names exactly the model's tensors; one line saying how it differs otherwise."""
    expected, given = set(model.state_dict()), set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing == sorted(expected):
        raise CheckpointError(f"{path} holds no LEIGNN weights: none of its {len(given)} tensors belongs to the "
                              f"model in its config (e.g. '{sorted(given)[0]}')")
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. '{missing[0]}')"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')"] if unexpected else []
        raise CheckpointError(f"{path}: weights do not match the model in its config: {', '.join(parts)}")


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
    if not is_leignn(model_config):
        raise CheckpointError(_not_leignn(path, model_config))
    name = model_config.pop("name")
    try:
        model = registry.get_model_class(name)(**model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model from its config ({err})") from None

    _check_state_dict(checkpoint["state_dict"], path)
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
        _copy_ema(model, ema_state, path)
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
