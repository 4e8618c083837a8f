"""The one exception type of the data tools.

Every problem with user input (a file, a frame, an option) is raised as :class:`DataError` with a
single-line message naming the file and frame, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from leignn_plugin.errors import UsageError


class DataError(UsageError):
    """Bad input or an impossible request; the message is one line meant for the user."""
