"""Dataset records unpickled without running code from them.

fairchem 1.10's ``LmdbDataset`` reads every record with plain ``pickle.loads``: a crafted record in an
LMDB from someone else would run its payload in the trainer, in ``leignn-data inspect`` and in every
evaluation. A fairchem record is a PyG ``Data`` of tensors, arrays and numbers, so :func:`loads` lets
the unpickler build exactly those (the globals below) and refuses anything else with one line naming
the global. :func:`safe_records` puts it in place of fairchem's ``pickle.loads`` while inside (the
trainer's ranks run in it unless ``--trust-data``); :func:`open_lmdb_dataset` is how the project's own
tools open a dataset.

Inside :func:`safe_records`, fairchem's ``LmdbDataset`` also checks every record it reads
(:func:`check_record`: a PyG ``Data`` whose fields fit one structure) and names the file and the record
of any problem, in one :class:`DataError` line: a record that is garbage, a dict, lacks ``pos``,
contradicts its ``natoms`` or has a degenerate periodic cell stops a run there instead of failing
later in collation or the model with a traceback (``--trust-data`` keeps these checks).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import pickle
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch
from fairchem.core.common.utils import pyg2_data_transform
from fairchem.core.datasets import lmdb_dataset, oc22_lmdb_dataset
from fairchem.core.datasets.lmdb_dataset import LmdbDataset
from torch_geometric.data import Data

from leignn_plugin.adapters.checkpoint_files import TorchScriptRefused, load_torch_file
from leignn_plugin.data.conventions import ENERGY_KEYS, FORCES_KEYS
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.lmdb_check import check_lmdb_source, lmdb_files
from leignn_plugin.errors import StructureError
from leignn_plugin.graph.extent import check_cells

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
    """What ``torch.storage._load_from_bytes`` does for pickled tensors, through the project's one
    loader: weights only, and a TorchScript archive refused unread (torch 2.4 would hand it to
    ``torch.jit.load``, which runs its code)."""
    try:
        return load_torch_file(data)
    except TorchScriptRefused:
        raise RecordRefused("torch.storage._load_from_bytes on a TorchScript archive (whose code torch.jit.load "
                            "would run)") from None


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


def _shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a tensor or array field, None for anything else."""
    return tuple(value.shape) if isinstance(value, (torch.Tensor, np.ndarray)) else None


def check_record(data: Any, where: str) -> None:
    """A record fairchem can collate and the model can read: a PyG ``Data`` with ``pos`` [N, 3] (finite),
    ``atomic_numbers`` [N], ``natoms`` N when stored, ``cell`` of 9 finite numbers, ``pbc`` of 3, per-atom
    ``tags``, ``fixed`` and forces of N rows, one energy, and a cell that is not degenerate along the axes
    ``pbc`` makes periodic. ``where`` names the record ("<file>, record <key>") in the one-line error."""
    if not isinstance(data, Data):
        raise DataError(f"{where} is a {type(data).__name__}, not a fairchem record (a PyG Data)")
    fields = set(data.keys() if callable(data.keys) else data.keys)  # a method since PyG 2.4
    pos = data["pos"] if "pos" in fields else None
    if pos is None:
        raise DataError(f"{where} has no pos (it holds {', '.join(sorted(fields)) or 'nothing'})")
    if not isinstance(pos, torch.Tensor) or pos.dim() != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise DataError(f"{where}: pos is {_described(pos)}, expected floats of shape [N, 3]")
    count = pos.shape[0]
    if not bool(torch.isfinite(pos).all()):
        raise DataError(f"{where}: pos contains NaN or inf (atom {int(torch.nonzero(~torch.isfinite(pos))[0, 0])})")
    numbers = data["atomic_numbers"] if "atomic_numbers" in fields else None
    if numbers is None or _shape(numbers) not in ((count,), (count, 1)):
        raise DataError(f"{where}: atomic_numbers is {_described(numbers)}, expected {count} (one per row of pos)")
    if "natoms" in fields and _count(data["natoms"]) != count:
        raise DataError(f"{where}: natoms is {_described(data['natoms'])} but pos holds {count} atoms")
    per_atom = [key for key in ("tags", "fixed") if key in fields and _shape(data[key]) not in ((count,), None)]
    per_atom += [key for key in FORCES_KEYS if key in fields and _shape(data[key]) != (count, 3)]
    if per_atom:
        key = per_atom[0]
        raise DataError(f"{where}: {key} is {_described(data[key])}, which does not fit its {count} atoms")
    for key in ENERGY_KEYS:
        if key in fields and _shape(data[key]) is not None and int(np.prod(_shape(data[key]))) != 1:
            raise DataError(f"{where}: {key} is {_described(data[key])}, expected one energy")
    cell = data["cell"] if "cell" in fields else None
    if cell is not None and (not isinstance(cell, torch.Tensor) or cell.numel() != 9
                             or not bool(torch.isfinite(cell).all())):
        raise DataError(f"{where}: cell is {_described(cell)}, expected 9 finite numbers ([1, 3, 3])")
    pbc = data["pbc"] if "pbc" in fields else None
    if pbc is not None and (_shape(pbc) is None or int(np.prod(_shape(pbc))) != 3):
        raise DataError(f"{where}: pbc is {_described(pbc)}, expected 3 flags ([1, 3])")
    if cell is not None and pbc is not None:
        try:
            check_cells(cell.view(1, 3, 3), torch.as_tensor(pbc).view(1, 3).bool(), lambda _: where)
        except StructureError as err:
            raise DataError(str(err)) from None


def _count(value: Any) -> int | None:
    """An integer count stored as an int or a one-element tensor or array; None otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    shape = _shape(value)
    if shape is not None and int(np.prod(shape)) == 1:
        return int(value.reshape(-1)[0])
    return None


def _described(value: Any) -> str:
    """A field's value as the error names it: its shape and type, or its repr."""
    shape = _shape(value)
    if shape is not None:
        return f"{'x'.join(map(str, shape)) or 'a scalar'} {value.dtype}".replace("torch.", "")
    return "missing" if value is None else repr(value)[:60]


def record_name(dataset: LmdbDataset, index: int) -> str:
    """Where record ``index`` of fairchem's ``dataset`` is stored: ``<file>, record <key>``."""
    position = int(dataset.indices[index])
    if dataset.path.is_file():
        return f"{dataset.path}, record {dataset._keys[position]}"
    shard = bisect.bisect(dataset._keylen_cumulative, position)
    local = position - (dataset._keylen_cumulative[shard - 1] if shard else 0)
    return f"{dataset.envs[shard].path()}, record {dataset._keys[shard][local]}"


_FAIRCHEM_GETITEM = LmdbDataset.__getitem__


def _as_data(record: Any) -> Any:
    """fairchem's ``pyg2_data_transform`` (PyG 1 records to PyG 2), refusing what is no ``Data`` at all."""
    if not isinstance(record, Data):
        raise DataError(f"holds a {type(record).__name__}, not a fairchem record (a PyG Data)")
    return pyg2_data_transform(record)


def _checked_getitem(self: LmdbDataset, index: int) -> Any:
    """fairchem's ``LmdbDataset.__getitem__``, every problem one :class:`DataError` naming file and record."""
    try:
        where = record_name(self, index)
    except (IndexError, TypeError, ValueError):  # not an index of this dataset: fairchem's own error
        return _FAIRCHEM_GETITEM(self, index)
    try:
        data = _FAIRCHEM_GETITEM(self, index)
    except DataError as err:  # a refused unpickling (loads)
        raise type(err)(f"{where}: {err}") from None
    except Exception as err:  # garbage bytes, a corrupt page (lmdb.Error), a dict where a Data belongs
        raise DataError(f"{where} cannot be read as a fairchem record ({type(err).__name__}: {err})") from None
    check_record(data, where)
    return data


@contextlib.contextmanager
def safe_records(trusted: bool = False) -> Iterator[None]:
    """While inside, fairchem's LMDB datasets unpickle records with :func:`loads` (unless ``trusted``) and
    check every record they read (:func:`check_record`), one line naming file and record otherwise."""
    modules = (lmdb_dataset, oc22_lmdb_dataset) if not trusted else ()
    originals = [module.pickle for module in modules]
    reader, transform = LmdbDataset.__getitem__, lmdb_dataset.pyg2_data_transform
    for module in modules:
        module.pickle = _pickle_with(loads)
    LmdbDataset.__getitem__, lmdb_dataset.pyg2_data_transform = _checked_getitem, _as_data
    try:
        yield
    finally:
        LmdbDataset.__getitem__, lmdb_dataset.pyg2_data_transform = reader, transform
        for module, original in zip(modules, originals):
            module.pickle = original


def check_first_record(path: Path) -> None:
    """Unpickle the first record of the LMDB file ``path`` safely and check it (:func:`check_record`), and
    its ``length`` entry: a crafted or malformed dataset is refused in one line before a run starts
    (every later record is checked as it is read, inside :func:`safe_records`)."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            length = txn.get(b"length")
            if length is not None:
                count = loads(length)
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise DataError(f"{path}: its 'length' entry is {count!r}, not a count of records")
            for key, value in txn.cursor():
                if key != b"length":
                    where = f"{path}, record {key.decode(errors='replace')}"
                    try:
                        record = loads(value)
                    except RecordRefused as refused:
                        raise RecordRefused(f"{where}: {refused}") from None
                    except Exception as err:  # a record that is not a pickle at all
                        raise DataError(f"{where} is not a fairchem record ({type(err).__name__}: {err})") from None
                    check_record(_as_data(record) if isinstance(record, Data) else record, where)
                    return
    except lmdb.Error as err:
        raise DataError(f"{path} is corrupt ({err})") from None
    finally:
        env.close()


class SafeLmdbDataset(LmdbDataset):
    """fairchem's ``LmdbDataset`` whose records are unpickled by :func:`loads` and checked by
    :func:`check_record` (one line naming file and record otherwise)."""

    def __init__(self, config: dict) -> None:
        with safe_records():
            super().__init__(config)

    def __getitem__(self, idx: int) -> Any:
        with safe_records():
            return super().__getitem__(idx)

    def record_name(self, idx: int) -> str:
        """``<file>, record <key>`` of record ``idx``."""
        return record_name(self, idx)


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
