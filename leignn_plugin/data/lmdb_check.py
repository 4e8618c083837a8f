"""Check an LMDB file's header before lmdb maps it, so a damaged file gets one line instead of a crash.

lmdb maps the whole file and reads its pages straight from memory: a page past the end of a
truncated file is a SIGBUS that kills the process without a word, and a corrupt header is an
``MDB_INVALID`` traceback. LMDB begins with two meta pages (page size, data version, the last page
in use, the number of entries); this module reads them with plain file reads and checks them
against the file's size. That keeps lmdb within a truncated file; a corrupt page behind a valid
header is the other way out of it: lmdb checks page numbers and page types (``CorruptedError``,
``PageNotFoundError``), but not where a page's node offsets or a record's size point, and one page
whose offsets were overwritten with 0xff sends it past the end of the file (SIGBUS, found by
corrupting pages of a dataset at random). :func:`check_pages` walks the B-tree of the main database
with plain reads and checks each of those against the page and the file: the tree pages only (about
one per hundred records), not the records themselves, which the readers unpickle with a check of their own.

Every place the project opens an LMDB or ASE-LMDB file it was given calls :func:`check_lmdb_source` or
:func:`check_lmdb_file` first: ``main.py``'s config check, ``leignn-data inspect``, ``to-aselmdb`` and
``from-ase``, ``leignn-md`` starting structures, ``leignn-submission --*-lmdb`` and the fairchem 2.x
config check and evaluation.

Layout read here (LMDB 0.9, the version the ``lmdb`` package bundles, 64-bit builds): a page header
of 16 bytes (page number, padding, flags at byte 10, free-space bounds), then the meta record:
magic, version, map address, map size, two database records of 48 bytes (the free-page database,
whose first field holds the page size, and the main database, whose ``entries`` is at byte 32),
the last page in use and the transaction id. Of the two meta pages lmdb uses the one with the
larger transaction id. Tree pages: the same 16-byte header (flags 1: branch, 2: leaf; then the lower
and upper bounds of the free space), 16-bit node offsets from byte 16, nodes of an 8-byte header (data
size or child page in its first 6 bytes, flags, key size) and the key; a leaf's data follows the key,
or, with flag 1, lives on overflow pages (flag 4, their count at byte 12) whose number the node holds.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
DB_ROOT = struct.Struct("=Q")  # at byte 40 of a database record
NO_PAGE = (1 << 64) - 1  # the root of an empty database
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 512, 1 << 16
BRANCH, LEAF, OVERFLOW, LEAF2 = 0x01, 0x02, 0x04, 0x20  # page flags
BIG_DATA = 0x01  # node flag: the data lives on overflow pages
NODE_HEADER = 8
LMDB_SUFFIXES = (".lmdb", ".aselmdb")


@dataclass(frozen=True)
class LmdbHeader:
    """What the current meta page of an LMDB file says."""

    page_size: int
    last_page: int
    entries: int
    txn_id: int
    root: int = NO_PAGE  # the main database's root page

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
    root = DB_ROOT.unpack_from(main_db, 40)[0]
    return LmdbHeader(page_size=page_size, last_page=last_page, entries=entries, txn_id=txn_id, root=root)


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


def check_pages(path: Path, header: LmdbHeader) -> None:
    """Walk the main database's B-tree of ``path`` (whose ``header`` :func:`read_header` checked): every
    tree page a branch or leaf page within the file, every node inside its page, every record's data
    inside its page or on overflow pages inside the file. One line naming the page otherwise."""
    if header.root == NO_PAGE:
        return
    size, pending, seen = header.page_size, [header.root], set()
    with open(path, "rb") as file:
        while pending:
            number = pending.pop()
            if number > header.last_page or number < 2 or number in seen:
                raise DataError(f"{path} is corrupt (a tree page points to page {number}, which is "
                                f"{'visited twice' if number in seen else 'not in the file'})")
            seen.add(number)
            page = os.pread(file.fileno(), size, number * size)
            if len(page) < size:
                raise DataError(f"{path} is truncated (page {number} ends past the end of the file)")
            pending.extend(_tree_page(page, number, header, path))


def _tree_page(page: bytes, number: int, header: LmdbHeader, path: Path) -> list[int]:
    """Check one branch or leaf page (its ``page_size`` bytes); returns the pages it points to."""
    size = header.page_size
    words = np.frombuffer(page, dtype="<u2")  # [page_size / 2]; nodes start at even offsets
    flags, lower, upper = int(words[5]), int(words[6]), int(words[7])
    corrupt = f"{path} is corrupt (page {number}"
    if not flags & (BRANCH | LEAF) or flags & (OVERFLOW | LEAF2) or not PAGE_HEADER <= lower <= upper <= size:
        raise DataError(f"{corrupt} is not a tree page: flags {flags:#x}, free space {lower}..{upper})")
    offsets = words[PAGE_HEADER // 2:lower // 2].astype(np.int64)  # [n]
    if offsets.size == 0:
        return []
    if int(offsets.min()) < upper or int(offsets.max()) > size - NODE_HEADER or bool((offsets & 1).any()):
        raise DataError(f"{corrupt} has a node outside the page)")
    at = offsets // 2  # [n], each node's first word: data size (or child page) low, high, flags, key size
    low = words[at].astype(np.int64) | words[at + 1].astype(np.int64) << 16  # [n]
    node_flags, key_size = words[at + 2].astype(np.int64), words[at + 3].astype(np.int64)  # [n]
    data = offsets + NODE_HEADER + key_size  # [n], where each node's data starts
    if flags & BRANCH:
        if int(data.max()) > size:
            raise DataError(f"{corrupt} has a key past its end)")
        return (low | node_flags << 32).tolist()
    big = (node_flags & BIG_DATA) != 0  # [n]
    if int((data + np.where(big, 8, low)).max()) > size:
        raise DataError(f"{corrupt} has a record past its end)")
    if not bool(big.any()):
        return []
    where = data[big]  # [b], the overflow page number of each big record
    raw = np.frombuffer(page, dtype=np.uint8)[where[:, None] + np.arange(8)]  # [b, 8]
    first = np.ascontiguousarray(raw).view("<u8")[:, 0].astype(np.int64)  # [b]
    last = first + -(-(PAGE_HEADER + low[big]) // size) - 1  # [b], each record's last overflow page
    bad = (first < 2) | (last > header.last_page)  # [b]
    if bool(bad.any()):
        k = int(np.argmax(bad))
        raise DataError(f"{corrupt} holds a record on pages {first[k]}..{last[k]}, past the file's last "
                        f"page {header.last_page})")
    return []


def check_lmdb_file(path: Path) -> LmdbHeader:
    """:func:`read_header` and :func:`check_pages` for one LMDB or ASE-LMDB file, before lmdb maps it."""
    header = read_header(path)
    check_pages(path, header)
    return header


def is_lmdb_file(path: Path) -> bool:
    """Whether ``path`` is an LMDB file, by its name or, whatever its name, its first meta page (readers
    such as ase.io.read open an ASE-LMDB file under any name)."""
    if path.suffix in LMDB_SUFFIXES:
        return True
    try:
        with open(path, "rb") as file:
            first = file.read(PAGE_HEADER + 4)
    except OSError:
        return False
    return len(first) == PAGE_HEADER + 4 and struct.unpack_from("=I", first, PAGE_HEADER)[0] == MAGIC


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
        headers = [check_lmdb_file(file) for file in files]
    except DataError as err:
        raise DataError(f"{prefix}{err}") from None
    if not any(header.entries for header in headers):
        raise DataError(f"{prefix}{src} holds no data (its {len(files)} LMDB file(s) have no entries)")
    return headers
