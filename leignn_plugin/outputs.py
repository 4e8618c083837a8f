"""Where the commands write: never through a symbolic link, never over an input, never over an output
the user did not ask to replace.

A leaf module (it imports only :mod:`leignn_plugin.errors`) shared by every tool that writes files:

- :func:`refuse_input_as_output`: an output that is one of the command's inputs (also through a
  symbolic link, a relative path or a hard link), or a folder to be replaced that holds one, is refused;
- :func:`check_output_file`: a file to write is refused when it exists (unless ``overwrite``), is a
  folder, or its folder is missing or not writable, before any work is done;
- :func:`inside_output`: a path below an output folder none of whose parts below the folder is a
  symbolic link (a link there, dangling or not, would take the write outside the folder);
- :func:`replace_file`: a file written in full under a temporary name beside it and renamed into
  place, which replaces a symbolic link at that name instead of writing through it, and never leaves
  a half-written file.

Each refusal is a :class:`~leignn_plugin.errors.UsageError` naming the option and the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from leignn_plugin.errors import UsageError


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file or folder (links and relative paths resolved, hard links too)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _holds(folder: Path, path: Path) -> bool:
    """``path`` lies inside ``folder`` (both resolved)."""
    return folder.resolve() in path.resolve().parents


def refuse_input_as_output(out: Path, inputs: Iterable[Path], flag: str = "--out", replaced_folder: bool = False
                           ) -> None:
    """Refuse an output ``out`` that is one of ``inputs``, or (``replaced_folder``: a folder the command
    replaces as a whole) one that holds an input."""
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        if _same_file(out, given):
            raise UsageError(f"{flag} {out} is the input {given}: writing it would replace the input; "
                             "choose another output path")
        if replaced_folder and _holds(out, given):
            raise UsageError(f"{flag} {out} holds the input {given}: replacing the folder would delete the "
                             "input; choose another output folder")


def check_output_file(path: Path, overwrite: bool, flag: str) -> None:
    """Refuse, before any work, a file that cannot or may not be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give the path of a file to write")
    if os.path.lexists(path) and not overwrite:
        raise UsageError(f"{flag} {path} already exists; pass --overwrite to replace it, or choose another path")
    folder = path.parent
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: the folder {folder} {state}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable")


def inside_output(root: Path, *parts: str) -> Path:
    """``root / parts``, refused when any of ``parts`` that exists is a symbolic link (writing there
    would leave ``root``); ``root`` itself may be a link the user chose."""
    path = Path(root)
    for part in parts:
        for piece in Path(part).parts:
            path = path / piece
            if path.is_symlink():
                raise UsageError(f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write "
                                 f"through it out of the output folder {root}")
    return path


@contextmanager
def replace_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it is renamed onto ``path``
    (replacing a file or a symbolic link of that name, never writing through it); on failure it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_text(path: Path, text: str) -> Path:
    """``text`` written to ``path`` through :func:`replace_file`."""
    with replace_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
