"""Reading the rows of ``.aselmdb`` files with ase and lmdb only (the counterpart of ``aselmdb_writer``),
so that ``leignn-data inspect`` and ``leignn-fairchem2 evaluate`` read fairchem 2.x datasets next to
either fairchem host.

A file from elsewhere is read defensively: its LMDB header and tree pages are checked before lmdb maps
it (``lmdb_check``: a truncated or corrupt file is otherwise a SIGBUS), a row is inflated to at most
:data:`ROW_BYTES`, and its JSON is decoded as ase's ``decode`` does except that an array is built only
when the values it holds fill the shape it declares (ase allocates the declared shape first: a row
declaring ``[10**12]`` would ask for 8 TB). Every problem is one :class:`DataError` naming file and row.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from ase import Atoms
from ase.db.row import AtomsRow
from ase.io.jsonio import fix_int_keys_in_dicts, numpyfy, object_hook

from leignn_plugin.data.errors import DataError
from leignn_plugin.data.lmdb_check import check_lmdb_file

ROW_BYTES = 1 << 30
"""Largest inflated row (1 GiB): a row is one structure, and a million atoms with positions, forces and
numbers are about 100 MB of JSON."""
MAX_DIMENSIONS = 32  # numpy's own limit on an array's dimensions


def read_rows(path: Path) -> Iterator[tuple[Atoms, dict]]:
    """Every row of one ``.aselmdb`` file in id order: the structure (labels in its calculator) and
    its ``data`` dict."""
    for _, atoms, data in named_rows(path):
        yield atoms, data


def named_rows(path: Path) -> Iterator[tuple[str, Atoms, dict]]:
    """:func:`read_rows` with each row's name, ``<file>: row <id>``, for errors met later on the structure."""
    check_lmdb_file(path)
    try:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        raise DataError(f"{path}: cannot be opened as an ASE-LMDB file ({err})") from None
    try:
        with env.begin() as txn:
            try:
                keys = sorted((key for key, _ in txn.cursor() if key.isdigit()), key=int)
            except lmdb.Error as err:
                raise DataError(f"{path} is corrupt ({err})") from None
            for key in keys:
                where = f"{path}: row {key.decode()}"
                try:
                    value = txn.get(key)
                except lmdb.Error as err:
                    raise DataError(f"{where} cannot be read, the file is corrupt ({err})") from None
                yield (where, *decode_row(value, where))
    finally:
        env.close()


def decode_row(value: bytes, where: str) -> tuple[Atoms, dict]:
    """One stored row (zlib-compressed JSON, as ``ase_db_backends`` writes it) as (structure, data)."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(value, ROW_BYTES)
        if inflater.unconsumed_tail:
            raise DataError(f"it inflates to more than {ROW_BYTES >> 20} MiB, more than one structure takes")
        record = json.JSONDecoder(object_hook=_object_hook).decode(text.decode())
        if not isinstance(record, dict):
            raise DataError(f"it is a JSON {type(record).__name__}, not an ASE database row (an object)")
        record = numpyfy(fix_int_keys_in_dicts(record))
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    except (zlib.error, ValueError, TypeError, OverflowError, RecursionError, UnicodeDecodeError) as err:
        raise DataError(f"{where} is not an ASE database row ({type(err).__name__}: {err})") from None
    data = record.get("data") or {}
    if not isinstance(data, dict):
        raise DataError(f"{where}: its data is a {type(data).__name__}, not a mapping")
    try:
        atoms = AtomsRow(record).toatoms()
    except Exception as err:  # any field ase cannot make a structure of
        raise DataError(f"{where} is not an ASE database row ({type(err).__name__}: {err})") from None
    return atoms, dict(data)


def _object_hook(dct: dict) -> Any:
    """ase's JSON object hook, with arrays checked before they are allocated."""
    if "__ndarray__" in dct:
        return _array(dct["__ndarray__"])
    return object_hook(dct)


def _array(spec: Any) -> np.ndarray:
    """``[shape, dtype, flat values]`` as an array, once the values are known to fill the shape."""
    if not isinstance(spec, list) or len(spec) != 3:
        raise DataError("an array is not [shape, dtype, values]")
    shape, dtype, values = spec
    if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise DataError(f"an array has the shape {str(shape)[:80]}, not a list of sizes")
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise DataError(f"an array has the dtype {str(dtype)[:80]}") from None
    if kind.kind not in "biufc" or not isinstance(values, list):
        raise DataError(f"an array of {kind} is not numbers")
    expected = math.prod(shape) * (2 if kind.kind == "c" else 1)
    if len(values) != expected:
        raise DataError(f"an array declares the shape {tuple(shape)} but holds {len(values)} values")
    if kind.kind == "c":
        return np.asarray(values, dtype=np.empty(0, kind).real.dtype).view(kind).reshape(shape)
    return np.asarray(values, dtype=kind).reshape(shape)
