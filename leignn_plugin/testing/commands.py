"""What the tests of every host assert about a command that refused its input."""

from __future__ import annotations


def error_line(returncode: int, stderr: str, prog: str, expected_status: int = 2) -> str:
    """The one ``<prog>: error:`` line of a failed command, checking there is one and no traceback."""
    assert returncode == expected_status, f"exit {returncode}, stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]
