"""What the tests of every host assert about a command that refused its input, and how they run `make`."""

from __future__ import annotations

import os


def error_line(returncode: int, stderr: str, prog: str, expected_status: int = 2) -> str:
    """The one ``<prog>: error:`` line of a failed command, checking there is one and no traceback."""
    assert returncode == expected_status, f"exit {returncode}, stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def as_typed_by_a_person() -> dict[str, str]:
    """This process's environment without what an enclosing ``make`` passes down (``MAKELEVEL``,
    ``MAKEFLAGS``, ``MFLAGS``): a ``make`` started with it prints what a person typing it would see, without
    the "Entering directory" lines of a sub-make (the suites themselves run under ``make test``)."""
    return {key: value for key, value in os.environ.items() if key not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
