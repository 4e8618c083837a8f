"""Bad input met inside a rank of a local multi-rank run reaches the user as one line, not as tracebacks.

A rank in the launcher's own process (one rank, or an ``srun`` task) raises its
:class:`~leignn_plugin.errors.UsageError` (a ``StructureError`` of a batch, say) straight up to
``main.py``'s front end. Ranks started by torch's elastic launcher are separate processes: an exception
there is printed twice as a traceback (by the rank and by the launcher's ``ChildFailedError``). Here
such a rank writes its message to a folder the launcher made and exits with status 2; the launcher
turns the first message into a ``UsageError`` in its own process, which the front end prints as its
one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from leignn_plugin.errors import UsageError

MESSAGE_DIR_ENV = "LEIGNN_RANK_ERRORS"  # where ranks of the current launch leave their messages
RANK_USAGE_EXIT = 2
# the launcher's module that logs a failed rank with the traceback of its own wait for it
LAUNCHER_LOGGER = "torch.distributed.elastic.multiprocessing.api"


@contextmanager
def reported_to_launcher() -> Iterator[None]:
    """Around a rank's work: under a launcher that collects messages, a ``UsageError`` is written for
    it (as ``rank<RANK>.txt``) and the rank exits with status 2; otherwise the error propagates unchanged."""
    folder = os.environ.get(MESSAGE_DIR_ENV)
    try:
        yield
    except UsageError as err:
        if not folder:
            raise
        (Path(folder) / f"rank{int(os.environ.get('RANK', '0'))}.txt").write_text(str(err))
        raise SystemExit(RANK_USAGE_EXIT) from None


def first_message(folder: Path) -> str | None:
    """The message of the lowest rank that left one, or None."""
    files = sorted(folder.glob("rank*.txt"), key=lambda path: int(path.stem[4:]))
    return files[0].read_text() if files else None


class _QuietWhenReported(logging.Filter):
    """Drops the launcher's traceback of a failed rank when a rank has left a message (its one line
    is printed instead); every other record passes."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None or first_message(self.folder) is None


@contextmanager
def usage_errors_from_ranks() -> Iterator[None]:
    """Around the launch of local ranks: a rank that stopped on bad input becomes one ``UsageError``."""
    with tempfile.TemporaryDirectory(prefix="leignn-ranks-") as folder:
        previous = os.environ.get(MESSAGE_DIR_ENV)
        os.environ[MESSAGE_DIR_ENV] = folder
        quiet = _QuietWhenReported(Path(folder))
        logging.getLogger(LAUNCHER_LOGGER).addFilter(quiet)
        try:
            yield
        except ChildFailedError:
            message = first_message(Path(folder))
            if message is None:
                raise
            raise UsageError(message) from None
        finally:
            logging.getLogger(LAUNCHER_LOGGER).removeFilter(quiet)
            if previous is None:
                os.environ.pop(MESSAGE_DIR_ENV, None)
            else:
                os.environ[MESSAGE_DIR_ENV] = previous
