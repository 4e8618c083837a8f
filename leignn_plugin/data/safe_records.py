"""Dataset records unpickled without running code from them.

fairchem 1.10's ``LmdbDataset`` reads every record with plain ``pickle.loads``: a crafted record in an
LMDB from someone else would run its payload in the trainer, in ``leignn-data inspect`` and in every
evaluation. A fairchem record is a PyG ``Data`` of tensors, arrays and numbers, so :func:`loads` lets
the unpickler build exactly those (the globals below) and refuses anything else with one line naming
the global. :func:`safe_records` puts it in place of fairchem's ``pickle.loads`` while inside (the
trainer's ranks run in it unless ``--trust-data``); :func:`open_lmdb_dataset` is how the project's own
tools open a dataset.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fairchem.core.datasets import lmdb_dataset, oc22_lmdb_dataset
from fairchem.core.datasets.lmdb_dataset import LmdbDataset

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.lmdb_check import check_lmdb_source, lmdb_files

# PyG's Data and its storages (how records written by fairchem's AtomsToGraphs and by leignn-data look).
PYG_CLASSES = {
    "torch_geometric.data.data": ("Data", "DataEdgeAttr", "DataTensorAttr"),
    "torch_geometric.data.storage": ("BaseStorage", "GlobalStorage", "NodeStorage", "EdgeStorage"),
}
# numpy's reconstructors under numpy 1.x and 2.x names.
NUMPY_FUNCTIONS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class RecordRefused(DataError, pickle.UnpicklingError):
    """A record that needs more than data to be unpickled; the message names what it asked for."""


def _tensor_from_bytes(data: bytes) -> torch.Tensor:
    """What ``torch.storage._load_from_bytes`` does for pickled tensors, but loading weights only."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _restricted_getattr(obj: object, name: str) -> Any:
    """``getattr`` for the one use records make of it: ``torch.from_numpy`` (tensors written by
    ``leignn-data``); any other attribute could reach arbitrary functions, so it is refused."""
    if obj is torch._C._VariableFunctionsClass and name == "from_numpy":
        return torch.from_numpy
    raise RecordRefused(f"getattr(..., {name!r})")


def _allowed(module: str, name: str) -> Any:
    """The object a record may ask for by (module, name), or None."""
    if name in PYG_CLASSES.get(module, ()):
        return getattr(__import__(module, fromlist=[name]), name)
    if (module, name) in NUMPY_FUNCTIONS:
        with contextlib.suppress(ImportError, AttributeError):
            return getattr(__import__(module, fromlist=[name]), name)
        return None
    fixed: dict[tuple[str, str], Any] = {
        ("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
        ("builtins", "getattr"): _restricted_getattr,
        ("torch._C", "_VariableFunctionsClass"): torch._C._VariableFunctionsClass,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _tensor_from_bytes,
        ("torch", "Size"): torch.Size,
    }
    if (module, name) in fixed:
        return fixed[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if module.startswith("numpy") and name.endswith("DType"):  # numpy 2's dtype classes
        return getattr(np.dtypes, name, None)
    return None


class RecordUnpickler(pickle.Unpickler):
    """An unpickler that builds only PyG ``Data``, tensors, arrays, numbers and containers."""

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed(module, name)
        if found is None:
            raise RecordRefused(f"{module}.{name}")
        return found


def loads(data: bytes, **_: Any) -> Any:
    """``pickle.loads`` for dataset records; :class:`RecordRefused` names the Python object refused."""
    try:
        return RecordUnpickler(io.BytesIO(data)).load()
    except RecordRefused as refused:
        raise RecordRefused(f"a dataset record needs the Python object {refused}, which a fairchem record "
                            "(PyG Data of tensors and arrays) never does; refused to unpickle it") from None


def _pickle_with(loader: Callable[..., Any]) -> types.SimpleNamespace:
    """A stand-in for the ``pickle`` module whose ``loads`` is ``loader`` (the rest is pickle's)."""
    return types.SimpleNamespace(**{**vars(pickle), "loads": loader})


@contextlib.contextmanager
def safe_records(trusted: bool = False) -> Iterator[None]:
    """While inside, fairchem's LMDB datasets unpickle records with :func:`loads` (unless ``trusted``)."""
    if trusted:
        yield
        return
    modules = (lmdb_dataset, oc22_lmdb_dataset)
    originals = [module.pickle for module in modules]
    for module in modules:
        module.pickle = _pickle_with(loads)
    try:
        yield
    finally:
        for module, original in zip(modules, originals):
            module.pickle = original


def check_first_record(path: Path) -> None:
    """Unpickle the first record of the LMDB file ``path`` safely: a crafted dataset is refused in one
    line before a run starts (every later record goes through :func:`loads` as it is read)."""
    import lmdb

    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            cursor = txn.cursor()
            for key, value in cursor:
                if key != b"length":
                    try:
                        loads(value)
                    except RecordRefused as refused:
                        raise RecordRefused(f"{path}, record {key.decode(errors='replace')}: {refused}") from None
                    except Exception as err:  # a record that is not a pickle at all
                        raise DataError(f"{path}, record {key.decode(errors='replace')} is not a fairchem "
                                        f"record ({type(err).__name__}: {err})") from None
                    return
    finally:
        env.close()


class SafeLmdbDataset(LmdbDataset):
    """fairchem's ``LmdbDataset`` whose records are unpickled by :func:`loads`."""

    def __init__(self, config: dict) -> None:
        with safe_records():
            super().__init__(config)

    def __getitem__(self, idx: int) -> Any:
        with safe_records():
            return super().__getitem__(idx)


def check_lmdb_dataset(src: str | os.PathLike[str], where: str = "", trusted: bool = False) -> None:
    """Headers of every LMDB file of ``src`` (missing, truncated, corrupt: before lmdb maps a file, so
    never a SIGBUS) and, unless ``trusted``, each file's first record (crafted: refused unread)."""
    check_lmdb_source(src, where)
    if trusted:
        return
    for file in lmdb_files(src):
        try:
            check_first_record(file)
        except DataError as err:
            raise type(err)(f"{where}: {err}" if where else str(err)) from None


def open_lmdb_dataset(src: str | os.PathLike[str], where: str = "", **options: Any) -> SafeLmdbDataset:
    """The project's one way to open an LMDB dataset it was given: checked by :func:`check_lmdb_dataset`,
    then read by fairchem's reader with safe unpickling. ``options`` go into the dataset's config."""
    check_lmdb_dataset(src, where)
    return SafeLmdbDataset({"src": str(src), **options})


@contextlib.contextmanager
def opened_lmdb_dataset(path: str | os.PathLike[str]) -> Iterator[SafeLmdbDataset]:
    """:func:`open_lmdb_dataset` for the length of a ``with`` block, its files closed on leaving; a
    dataset fairchem's reader cannot open is one :class:`DataError` line."""
    try:
        dataset = open_lmdb_dataset(path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot be opened as a fairchem LMDB dataset ({exc})") from None
    try:
        yield dataset
    finally:
        close_lmdb_dataset(dataset)


def close_lmdb_dataset(dataset: LmdbDataset) -> None:
    """Close a dataset's LMDB files now (an LMDB file can be open only once per process)."""
    for env in getattr(dataset, "envs", [getattr(dataset, "env", None)]):
        if env is not None:
            env.close()
