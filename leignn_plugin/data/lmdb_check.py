"""Check an LMDB file's header before lmdb maps it, so a damaged file gets one line instead of a crash.

lmdb maps the whole file and reads its pages straight from memory: a page past the end of a
truncated file is a SIGBUS that kills the process without a word, and a corrupt header is an
``MDB_INVALID`` traceback. LMDB begins with two meta pages (page size, data version, the last page
in use, the number of entries); this module reads them with plain file reads and checks them
against the file's size, which is all lmdb needs to stay within the file. Every place the project
opens an LMDB it was given calls :func:`check_lmdb_source` first: ``main.py``'s config check,
``leignn-data inspect``, ``leignn-md`` starting structures and ``leignn-submission --*-lmdb``.

Layout read here (LMDB 0.9, the version the ``lmdb`` package bundles, 64-bit builds): a page header
of 16 bytes (page number, padding, flags at byte 10, free-space bounds), then the meta record:
magic, version, map address, map size, two database records of 48 bytes (the free-page database,
whose first field holds the page size, and the main database, whose ``entries`` is at byte 32),
the last page in use and the transaction id. Of the two meta pages lmdb uses the one with the
larger transaction id.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from leignn_plugin.data.errors import DataError

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
META_PAGE_FLAG = 0x08
PAGE_HEADER = 16
PAGE_FLAGS = struct.Struct("=H")  # at byte 10 of the page header
DB_RECORD = 48
META = struct.Struct(f"=IIQQ{DB_RECORD}s{DB_RECORD}sQQ")
DB_PAGE_SIZE = struct.Struct("=I")  # the free-page database's first field
DB_ENTRIES = struct.Struct("=Q")  # at byte 32 of a database record
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 512, 1 << 16


@dataclass(frozen=True)
class LmdbHeader:
    """What the current meta page of an LMDB file says."""

    page_size: int
    last_page: int
    entries: int
    txn_id: int

    @property
    def used_bytes(self) -> int:
        """Bytes the file must have: every page up to the last one in use."""
        return (self.last_page + 1) * self.page_size


def human_size(size: int) -> str:
    """``2.0 MB``, ``350.2 kB``, ``87 bytes`` (decimal units, as ``ls -h --si`` prints them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _meta(page: bytes, path: Path, which: str) -> LmdbHeader:
    """Parse one meta page; one line saying what is wrong when it is not a valid LMDB meta page."""
    flags = PAGE_FLAGS.unpack_from(page, 10)[0]
    magic, version, _address, _mapsize, free_db, main_db, last_page, txn_id = META.unpack_from(page, PAGE_HEADER)
    if magic != MAGIC or not flags & META_PAGE_FLAG:
        raise DataError(f"{path} is not an LMDB file or its {which} header page is corrupt (no LMDB magic number)")
    if version != DATA_VERSION:
        raise DataError(f"{path} was written in LMDB data format {version}; the installed lmdb reads format "
                        f"{DATA_VERSION}")
    page_size = DB_PAGE_SIZE.unpack_from(free_db)[0]
    if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE or page_size & (page_size - 1):
        raise DataError(f"{path} has a corrupt {which} header page (page size {page_size})")
    entries = DB_ENTRIES.unpack_from(main_db, 32)[0]
    return LmdbHeader(page_size=page_size, last_page=last_page, entries=entries, txn_id=txn_id)


def read_header(path: Path) -> LmdbHeader:
    """The current meta page of ``path``, checked against the file's size (no lmdb, no mapping)."""
    meta_size = PAGE_HEADER + META.size
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            first = file.read(meta_size)
            if size == 0:
                raise DataError(f"{path} is empty (0 bytes), not an LMDB file")
            if len(first) < meta_size:
                raise DataError(f"{path} is truncated or not an LMDB file ({human_size(size)}, shorter than "
                                "LMDB's header)")
            meta0 = _meta(first, path, "first")
            file.seek(meta0.page_size)
            second = file.read(meta_size)
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an LMDB file (fairchem reads single-file LMDBs)") from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        if err.errno == errno.EACCES:
            reason = "permission denied"
        raise DataError(f"{path} cannot be read ({reason})") from None
    if len(second) < meta_size:
        raise DataError(f"{path} is truncated ({human_size(size)} on disk, shorter than LMDB's two header pages)")
    meta1 = _meta(second, path, "second")
    current = meta1 if meta1.txn_id > meta0.txn_id else meta0
    if current.page_size != meta0.page_size:
        raise DataError(f"{path} has corrupt header pages (page sizes {meta0.page_size} and {meta1.page_size})")
    if size < current.used_bytes:
        raise DataError(f"{path} is truncated ({human_size(size)} on disk, its header says "
                        f"{human_size(current.used_bytes)} are in use)")
    return current


def lmdb_files(src: str | os.PathLike[str]) -> list[Path]:
    """The LMDB files fairchem would open for ``src``: the file itself, or a folder's ``*.lmdb``."""
    path = Path(src)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_file():
        return [path]
    try:
        files = sorted(path.glob("*.lmdb"))
    except OSError as err:
        raise DataError(f"{path} cannot be read ({os.strerror(err.errno) if err.errno else err})") from None
    if not files:
        raise DataError(f"{path} holds no .lmdb files")
    return files


def check_lmdb_source(src: str | os.PathLike[str], where: str = "") -> list[LmdbHeader]:
    """Check ``src`` (an LMDB file or a folder of them) as fairchem would read it; returns the headers.

    ``where`` (a config key or an option, e.g. ``dataset.val.src``) starts the message. Raises
    :class:`DataError` for a missing path, a folder without ``.lmdb`` files, an unreadable, truncated
    or corrupt file, and a dataset whose files hold no entries at all.
    """
    prefix = f"{where}: " if where else ""
    try:
        files = lmdb_files(src)
        headers = [read_header(file) for file in files]
    except DataError as err:
        raise DataError(f"{prefix}{err}") from None
    if not any(header.entries for header in headers):
        raise DataError(f"{prefix}{src} holds no data (its {len(files)} LMDB file(s) have no entries)")
    return headers
