"""Error types shared by every layer and command-line tool (a leaf module: it imports nothing of the
project). A command catches :class:`UsageError` (and its subclasses) and prints its message as one line."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class StructureError(UsageError, ValueError):
    """A structure that no potential should be asked about (non-finite coordinates, unknown elements,
    atoms on top of each other); the message names the structure and the atoms."""
