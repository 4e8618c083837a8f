"""The one exception type of the data tools.

Every problem with user input (a file, a frame, an option) is raised as :class:`DataError` with a
single-line message naming the file and frame, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import re

from leignn_plugin.errors import UsageError

# how torch's DataLoader re-raises an error of a worker process: the type, rebuilt from this text
WORKER_WRAPPING = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback", re.MULTILINE)
RAISED = re.compile(r"^[\w.]+: (?P<message>.*)$")


class DataError(UsageError):
    """Bad input or an impossible request; the message is one line meant for the user.

    Raised in a DataLoader worker (a record read by the trainer), torch rebuilds it in the main process
    from "Caught DataError in DataLoader worker process 0. Original Traceback ..." and the traceback's
    text: such a message is cut back to the original line.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message)
        if WORKER_WRAPPING.match(text):
            last = text.rstrip().splitlines()[-1]
            found = RAISED.match(last)
            text = found.group("message") if found else last
        super().__init__(text)
