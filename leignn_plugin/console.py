"""How every ``leignn-*`` command ends: one line for bad input, quiet exits for Ctrl-C and closed pipes.

A leaf module (it imports only :mod:`leignn_plugin.errors`), so every command-line tool, whatever its
layer, reports problems the same way: ``<prog>: error: <message>`` on stderr with exit status 2. Ctrl-C
while a command is still importing its host (before :func:`run_command` runs) is handled by
:func:`interrupted_during_start_up`, which the package calls around that import, and the noise that
import makes in a command (:data:`IMPORT_NOISE`, :data:`IMPORT_WARNINGS`) is dropped by
:func:`quiet_host_import`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from leignn_plugin.errors import UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a C tool killed by the closed pipe would report
COMMANDS = frozenset({"leignn-data", "leignn-md", "leignn-submission", "leignn-bench", "leignn-main",
                      "leignn-fairchem2"})
"""The console scripts (``pyproject.toml``): the programs whose start-up :func:`interrupted_during_start_up` ends."""
SCRIPTS = frozenset({"main.py"})
"""Scripts of the repository that start the same way (``main.py``, fairchem's command line with the plugin)."""

IMPORT_NOISE = (
    # warp (fairchem 2.x imports it through nvalchemiops) on a machine without an NVIDIA driver, printed from C
    re.compile(rb"^Warp CUDA warning: Could not find or load the NVIDIA CUDA driver\. GPU execution will not be available\.$"),
)
"""Lines the host's import prints on stderr that tell the user of a command nothing."""

IMPORT_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = tuple(
    # fairchem 1.10's model modules read their own constant tensors (Wigner matrices) with a plain
    # torch.load when they are imported; torch 2.4 warns about its future default on each
    ("You are using `torch.load` with `weights_only=False`", FutureWarning, f"fairchem.core.models.{module}")
    for module in ("escn.so3", "scn.spherical_harmonics", "equiformer_v2.wigner")
)
"""Python warnings the host raises while it is imported: the start of the message, the category and the
module that raises it (exactly; ranks a command starts get them in ``PYTHONWARNINGS``, :func:`rank_warnings`)."""


def one_line(message: object) -> str:
    """``message`` as a single line (a multi-line exception text is joined with ' | ')."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " | ".join(lines) if lines else type(message).__name__


def error(prog: str, message: object) -> int:
    """Print ``<prog>: error: <message>`` on stderr and return the usage exit status."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_command(
    prog: str,
    body: Callable[[], int],
    errors: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted",
) -> int:
    """Run a command's ``body`` and turn the ways it can end into exit statuses.

    :class:`UsageError` (and ``errors``) become one line and status 2; Ctrl-C prints ``interrupted``
    (or the command's own words, e.g. what was kept) and 130; a reader that closed the pipe
    (``leignn-data inspect ... | head``) ends the command quietly, as Unix tools do.
    """
    try:
        status = body()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return status
    except (UsageError, *errors) as err:
        return error(prog, err)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _program() -> str:
    """The running program's name (a console script's, ``main.py``), or "" for Python itself."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""


def interrupted_during_start_up() -> None:
    """Ctrl-C while a ``leignn-*`` command imports the package (fairchem's import takes seconds): one line
    and exit status 130, no traceback. Anywhere else (a Python session importing the package) it returns,
    and the caller re-raises the KeyboardInterrupt."""
    prog = _program()
    if prog in COMMANDS:
        print(f"{prog}: interrupted during start-up", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _no_info_logs() -> Iterator[None]:
    """No log records below WARNING (fairchem 1.10's ``setup_imports`` logs its "Project root")."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def quiet_host_import() -> Iterator[None]:
    """Around the host's import in a command (a ``leignn-*`` script or ``main.py``): the lines of
    :data:`IMPORT_NOISE` it prints on stderr (also from C), the warnings of :data:`IMPORT_WARNINGS` and its
    informational log records are dropped; warnings, errors and everything else it prints come through, in
    order. In any other program nothing changes."""
    if _program() not in COMMANDS | SCRIPTS:
        yield
        return
    with warnings.catch_warnings(), _no_info_logs():
        for message, category, module in IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), category=category,
                                    module=re.escape(module) + r"\Z")
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no file descriptor 2: only the warnings are filtered
            yield
            return
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = b"".join(line for line in captured if not any(p.match(line.rstrip(b"\n")) for p in IMPORT_NOISE))
                os.write(2, kept)


def rank_warnings(environment: str | None) -> str:
    """``PYTHONWARNINGS`` for the processes a command starts (its ranks import fairchem again):
    ``environment`` (the user's own filters, kept first) and :data:`IMPORT_WARNINGS`."""
    given = [entry for entry in (environment or "").split(",") if entry]
    ours = [f"ignore:{message}:{category.__name__}:{module}" for message, category, module in IMPORT_WARNINGS]
    return ",".join([*given, *(entry for entry in ours if entry not in given)])
