"""Atomic creation of an output directory.

Everything is written into a hidden sibling directory (``.NAME.partial-XXXX``) that is renamed
onto the final path only once complete, so an interrupted or failed run never leaves a dataset
that looks whole.  With ``overwrite`` an existing directory is replaced only after the new one
is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leignn_plugin.data.errors import DataError


def check_output_free(final: Path, *, overwrite: bool) -> None:
    """Refuse early (before any work) when the output exists and may not be replaced."""
    if os.path.lexists(final) and not overwrite:  # a dangling symbolic link counts: it would be replaced
        raise DataError(f"{final}: output directory already exists (use --overwrite to replace it)")
    if final.exists() and not final.is_dir():
        raise DataError(f"{final}: exists and is not a directory")


@contextmanager
def staged_output(final: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a private staging directory and publish it at ``final`` if the block succeeds.

    Args:
        final: The directory the dataset must end up in.
        overwrite: Whether an existing ``final`` may be replaced.

    Yields:
        The staging directory to write into; it is removed if the block raises.
    """
    final = Path(final)
    check_output_free(final, overwrite=overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    except OSError as exc:
        raise DataError(f"{final}: cannot create output directory ({exc.strerror})") from exc
    try:
        yield staging
        _publish(staging, final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, final: Path, *, overwrite: bool) -> None:
    """Rename the finished staging directory onto ``final`` (replacing it if allowed)."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    if os.path.lexists(final):  # the old folder (or a link) is moved aside, never written through
        check_output_free(final, overwrite=overwrite)
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.replaced-", dir=final.parent))
        os.rename(final, trash / final.name)
        os.rename(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, final)
