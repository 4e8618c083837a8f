"""Error types shared by the command-line tools (a leaf module: it imports nothing of the project)."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
