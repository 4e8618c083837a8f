"""Reading torch checkpoint files safely: the one loader every host adapter and converter uses.

Files are unpickled with ``weights_only=True`` (tensors, containers, numbers and strings), so a crafted
file cannot run code; a file that needs more is refused with one line naming what it needs, and
``trusted=True`` (``--trust-checkpoint``) loads it with full unpickling, only for files from a source
you trust. Every way a load can fail becomes one :class:`CheckpointError` line naming the file.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from leignn_plugin.errors import UsageError

# torch.load as torch defines it, whatever a caller (``safe_load.safe_loading``) puts in its place.
_TORCH_LOAD = torch.serialization.load
TRUST_HINT = ("load it with --trust-checkpoint (trust_checkpoint=True in Python) only if it comes from a "
              "source you trust")
# What a file may fail with while it is opened and unpickled (a truncated zip, a legacy pickle cut
# short, garbage bytes, a class a trusted file names that no longer exists).
_UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, AttributeError,
               ImportError, KeyError, IndexError, TypeError, ValueError, struct.error)


LEGACY_TARGET_NAMES = {"target": "energy", "grad_target": "forces"}
"""Normalizer names of older fairchem 1.x checkpoints and what they are now."""


class CheckpointError(UsageError, ValueError):
    """A checkpoint that cannot serve as a LEIGNN potential, or a file refused by the safe load; the
    message is one line naming the file."""


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


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False,
                    is_leignn: Callable[[dict], bool] | None = None) -> dict:
    """The fairchem 1.x checkpoint at ``path`` as a dict with ``config`` (naming a model) and ``state_dict``.

    Loaded weights-only unless ``trust_checkpoint``. With ``is_leignn`` (the host's test of a model
    config) the model must be LEIGNN (or hydra on its backbone); either way the state dict must hold
    tensors, so an empty or foreign file is refused here, before anything is built or written from it.
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
    if is_leignn is not None and not is_leignn(model_config):
        raise CheckpointError(not_leignn(path, model_config))
    check_state_dict(checkpoint["state_dict"], path)
    return checkpoint


def not_leignn(path: Path, model_config: dict) -> str:
    return (f"{path} holds a '{model_config['name']}' model, not LEIGNN "
            "(expected leignn, a dotted path to LEIGNN, or hydra on leignn_backbone)")


def check_state_dict(state: object, path: Path) -> None:
    """A state dict is a non-empty mapping of names to tensors."""
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path} holds no weights (its state_dict is empty or not a mapping)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")


def copy_ema(model: torch.nn.Module, ema_state: dict, path: Path) -> None:
    """Put the EMA shadow weights of a fairchem 1.x checkpoint in place, in the order fairchem's
    ExponentialMovingAverage keeps them (the model's parameters that require grad)."""
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
