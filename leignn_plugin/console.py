"""How every ``leignn-*`` command ends: one line for bad input, quiet exits for Ctrl-C and closed pipes.

A leaf module (it imports only :mod:`leignn_plugin.errors`), so every command-line tool, whatever its
layer, reports problems the same way: ``<prog>: error: <message>`` on stderr with exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from leignn_plugin.errors import UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a C tool killed by the closed pipe would report


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
