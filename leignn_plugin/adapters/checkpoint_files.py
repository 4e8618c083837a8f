"""Reading torch checkpoint files safely: the one loader every host adapter and converter uses.

Files are unpickled with ``weights_only=True`` (tensors, containers, numbers and strings), so a crafted
file cannot run code; a file that needs more is refused with one line naming what it needs, and
``trusted=True`` (``--trust-checkpoint``) loads it with full unpickling, only for files from a source
you trust. A TorchScript archive is refused before ``torch.load`` sees it, trusted or not: torch < 2.6
hands one to ``torch.jit.load`` even when asked for weights only, and that runs the archive's code
(CVE-2025-32434); no checkpoint is one. Every way a load can fail becomes one :class:`CheckpointError`
line naming the file.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from leignn_plugin.errors import UsageError

# torch.load as torch defines it, whatever a caller (``safe_load.safe_loading``) puts in its place.
_TORCH_LOAD = torch.serialization.load
# What every weights-only refusal says instead of pointing at --trust-checkpoint: the flag stays in --help
# and the README for a file whose origin the user knows, but a refusal fires exactly when a file may be
# crafted, so it must not read as the way past the check.
WEIGHTS_ONLY = "a checkpoint written by fairchem holds only tensors, numbers, strings and containers"
# The first bytes of a zip file: torch.load treats a file that starts with them as a zip archive.
_ZIP_MAGIC = b"PK\x03\x04"
# What a file may fail with while it is opened and unpickled (a truncated zip, a legacy pickle cut
# short, garbage bytes, a class a trusted file names that no longer exists).
_UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, AttributeError,
               ImportError, KeyError, IndexError, TypeError, ValueError, struct.error)


LEGACY_TARGET_NAMES = {"target": "energy", "grad_target": "forces"}
"""Normalizer names of older fairchem 1.x checkpoints and what they are now."""


class CheckpointError(UsageError, ValueError):
    """A checkpoint that cannot serve as a LEIGNN potential, or a file refused by the safe load; the
    message is one line naming the file."""


class TorchScriptRefused(CheckpointError):
    """A TorchScript archive given where a checkpoint (or a pickled tensor) belongs."""


def _refusal(path: object, err: pickle.UnpicklingError) -> str:
    """One line for a file the weights-only unpickler stopped at, naming the global it met, if any
    (garbage bytes stop it too, at an opcode it does not know)."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", str(err))
    if found:
        return (f"refused to load {path}: it needs the Python object {found.group(1)}, and unpickling that "
                f"could run code; {WEIGHTS_ONLY}")
    detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()
    return (f"{path} is not a readable torch checkpoint (a weights-only load stops at: "
            f"{detail[0] if detail else type(err).__name__})")


def _torchscript_records(opened: IO[bytes]) -> bool:
    """Whether torch.load would hand ``opened`` to ``torch.jit.load``, decided as torch decides it
    (a zip whose records, read by torch's own zip reader, include ``constants.pkl``) without loading
    anything from it; the stream is left where it was."""
    start = opened.tell()
    try:
        if opened.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return False
        opened.seek(start)
        records = torch._C.PyTorchFileReader(opened).get_all_records()
        return any(record.rsplit("/", 1)[-1] == "constants.pkl" for record in records)
    finally:
        opened.seek(start)


def _opened(source: Any) -> contextlib.AbstractContextManager[IO[bytes]]:
    """``source`` (a path, bytes or a binary stream) as a binary stream, opened once: what is checked is
    what is loaded."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return contextlib.nullcontext(source)


def _name(source: Any) -> str:
    """How a message names ``source``: its path, or what it is."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "in-memory bytes" if isinstance(source, (bytes, bytearray, memoryview)) else repr(source)


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
    """``torch.load`` of ``source`` (a path, bytes or a binary stream) with ``weights_only=True`` (also
    allowing ``extra_globals``) unless ``trusted``; a TorchScript archive is refused first, either way.

    Every way the load can fail becomes a one-line :class:`CheckpointError` naming the file: a
    refused pickle (with the global torch names), a TorchScript archive, a truncated or corrupt file,
    an unreadable one. ``safe_load.safe_loading`` routes fairchem's own ``torch.load`` calls through
    here as well, and the dataset record reader its pickled tensors. Checkpoints written by fairchem
    1.10's trainer need no extra globals.
    """
    name = _name(source)
    try:
        with _opened(source) as opened:
            if _torchscript_records(opened):
                raise TorchScriptRefused(
                    f"refused to load {name}: it is a TorchScript archive (it holds constants.pkl), whose code "
                    "torch.jit.load would run even for a weights-only load; a checkpoint holds weights, not a "
                    "scripted program")
            with _allowed_globals(() if trusted else extra_globals):
                return _TORCH_LOAD(opened, map_location=map_location, weights_only=not trusted, **kwargs)
    except pickle.UnpicklingError as err:
        if not trusted and str(err).startswith("Weights only load failed"):
            raise CheckpointError(_refusal(name, err)) from None
        raise CheckpointError(_unreadable(name, err)) from None
    except OSError as err:
        raise CheckpointError(f"cannot read {name}: {err.strerror or err}") from None
    except _UNREADABLE as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(_unreadable(name, err)) from None


def _unreadable(source: object, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"{source} is not a readable torch checkpoint, perhaps truncated or corrupt ({type(err).__name__}: {first})"


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False,
                    is_leignn: Callable[[dict], bool] | None = None, loaded: object = None) -> dict:
    """The fairchem 1.x checkpoint at ``path`` as a dict with ``config`` (naming a model) and ``state_dict``.

    Loaded weights-only unless ``trust_checkpoint`` (``loaded``: what the file already unpickled to).
    With ``is_leignn`` (a test of a model config) the model must be LEIGNN (or hydra on its backbone);
    either way the state dict must hold tensors, so an empty or foreign file is refused here, before
    anything is built or written from it.
    """
    path = Path(path)
    if loaded is None and not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    checkpoint = load_torch_file(path, trusted=trust_checkpoint) if loaded is None else loaded
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path} is not a fairchem checkpoint (no 'config' and 'state_dict' entries)")
    config = checkpoint["config"]
    model_config = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_config, dict) or not isinstance(model_config.get("name"), str):
        raise CheckpointError(f"{path} has no 'model: {{name: ...}}' in its config")
    if is_leignn is not None and not is_leignn(model_config):
        raise CheckpointError(not_leignn(path, model_config))
    check_state_dict(checkpoint["state_dict"], path)
    stored_normalizers(checkpoint, path)
    stored_element_references(checkpoint, path)
    return checkpoint


def not_leignn(path: Path, model_config: dict) -> str:
    """The line for a checkpoint whose model config is not LEIGNN, naming what it holds instead."""
    if model_config["name"] != "hydra":
        return (f"{path} holds a '{model_config['name']}' model, not LEIGNN "
                "(expected leignn, a dotted path to LEIGNN, or hydra on leignn_backbone)")
    backbone, heads = model_config.get("backbone"), model_config.get("heads")
    parts = [f"backbone '{backbone.get('model') if isinstance(backbone, Mapping) else backbone}'"]
    if isinstance(heads, Mapping) and heads:
        parts += [f"head '{head.get('module') if isinstance(head, Mapping) else head}'" for head in heads.values()]
    else:
        parts.append("no heads")
    return (f"{path} holds a hydra model with {', '.join(parts)}, not LEIGNN's (expected leignn_backbone and "
            "LEIGNN's heads, named as registered or by their dotted paths)")


def check_state_dict(state: object, path: Path) -> None:
    """A state dict is a non-empty mapping of names to tensors."""
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path} holds no weights (its state_dict is empty or not a mapping)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")


def _stored_mapping(checkpoint: Mapping, entry: str, path: Path) -> Mapping:
    stored = checkpoint.get(entry)
    if stored is None:
        return {}
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{path}: its '{entry}' entry is a {type(stored).__name__}, not a mapping of targets "
                              "to state dicts")
    return stored


def _described(value: object) -> str:
    if value is None:
        return "missing"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _number(value: object, where: str, path: Path) -> torch.Tensor:
    """``value`` if it is one finite number as fairchem's ``Normalizer`` stores it: a 0-d real tensor."""
    if not (isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point()):
        raise CheckpointError(f"{path}: {where} is {_described(value)}, not one number (a 0-d float tensor)")
    if not math.isfinite(float(value)):
        raise CheckpointError(f"{path}: {where} is {float(value)}, not a finite number")
    return value.detach()


def _only(state: Mapping, keys: tuple[str, ...], where: str, path: Path) -> None:
    """fairchem's trainer loads these states strictly: anything besides ``keys`` stops it."""
    extra = sorted(str(key) for key in state if key not in keys)
    if extra:
        raise CheckpointError(f"{path}: {where} holds {', '.join(repr(k) for k in extra)} besides {' and '.join(keys)}")


def stored_normalizers(checkpoint: Mapping, path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint's ``normalizers`` as ``{target: {"mean": m, "rmsd": s}}`` (0-d tensors; legacy
    target names and ``std`` renamed), checked to be what fairchem's trainer can load. Anything else,
    e.g. a string, a state without its mean or a non-number, is one :class:`CheckpointError` line
    naming the file and the key."""
    normalizers = {}
    for key, state in _stored_mapping(checkpoint, "normalizers", path).items():
        where = f"normalizers[{key!r}]"
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: {where} is {_described(state)}, not a normalizer's state (mean and rmsd)")
        spread = "rmsd" if "rmsd" in state else "std"
        _only(state, ("mean", spread), where, path)
        normalizers[LEGACY_TARGET_NAMES.get(key, key)] = {
            "mean": _number(state.get("mean"), f"{where}['mean']", path),
            "rmsd": _number(state.get(spread), f"{where}['{spread}']", path),
        }
    return normalizers


def stored_element_references(checkpoint: Mapping, path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's ``elementrefs`` as ``{target: references}`` (a 1-d tensor of finite numbers, one
    per atomic number from 0); anything else is one :class:`CheckpointError` line naming the file and the key."""
    references = {}
    for key, state in _stored_mapping(checkpoint, "elementrefs", path).items():
        where = f"elementrefs[{key!r}]"
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: {where} is {_described(state)}, not a state dict of element references")
        _only(state, ("element_references",), where, path)
        values = state.get("element_references")
        if not isinstance(values, torch.Tensor) or values.ndim != 1 or not values.is_floating_point():
            raise CheckpointError(f"{path}: {where}['element_references'] is {_described(values)}, not a 1-d float "
                                  "tensor")
        if not torch.isfinite(values).all():
            raise CheckpointError(f"{path}: {where} holds values that are not finite")
        references[key] = values.detach()
    return references


def check_weight_names(model: torch.nn.Module, state: Mapping, path: Path, optional: Callable[[str], bool]) -> None:
    """The weights ``state`` name exactly the tensors of ``model`` (those for which ``optional`` holds may
    be missing); one :class:`CheckpointError` line saying how they differ otherwise."""
    names, given = set(model.state_dict()), set(state)
    required = {k for k in names if not optional(k)}
    missing, unexpected = sorted(required - given), sorted(given - names)
    if missing == sorted(required):
        raise CheckpointError(f"{path} holds no LEIGNN weights: none of its {len(given)} tensors belongs to the "
                              f"model in its config (e.g. '{sorted(given)[0]}')")
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. '{missing[0]}')"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')"] if unexpected else []
        raise CheckpointError(f"{path}: weights do not match the model in its config: {', '.join(parts)}")


def weights_mismatch(err: RuntimeError, path: Path) -> CheckpointError:
    """torch's ``load_state_dict`` error as one line naming the file (its first specific line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    first = lines[1] if len(lines) > 1 else lines[0]  # the line after torch's "Error(s) in loading ..."
    return CheckpointError(f"{path}: weights do not match the model in its config ({first[:300]})")


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
