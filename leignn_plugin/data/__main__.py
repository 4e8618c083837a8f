"""``python -m leignn_plugin.data``: the same as the ``leignn-data`` command."""

from __future__ import annotations

import sys

from leignn_plugin.data.cli import main

sys.exit(main())
