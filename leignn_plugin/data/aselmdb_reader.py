"""Reading the rows of ``.aselmdb`` files with ase and lmdb only (the counterpart of ``aselmdb_writer``),
so that ``leignn-data inspect`` reads fairchem 2.x datasets next to either fairchem host."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import lmdb
from ase import Atoms
from ase.db.row import AtomsRow
from ase.io.jsonio import decode

from leignn_plugin.data.errors import DataError


def read_rows(path: Path) -> Iterator[tuple[Atoms, dict]]:
    """Every row of one ``.aselmdb`` file in id order: the structure (labels in its calculator) and
    its ``data`` dict."""
    try:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        raise DataError(f"{path}: cannot be opened as an ASE-LMDB file ({err})") from None
    try:
        with env.begin() as txn:
            keys = sorted((key for key, _ in txn.cursor() if key.isdigit()), key=int)
            for key in keys:
                try:
                    record = decode(zlib.decompress(txn.get(key)).decode("utf-8"))
                    row = AtomsRow(record)
                    atoms = row.toatoms()
                except (zlib.error, ValueError, KeyError, TypeError) as err:
                    raise DataError(f"{path}: row {key.decode()} is not an ASE database row ({err})") from None
                yield atoms, dict(record.get("data") or {})
    finally:
        env.close()
