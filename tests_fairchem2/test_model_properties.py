"""The generic model suite (leignn_plugin.testing.suite) over every model configuration, in fairchem 2.x."""

from __future__ import annotations

from leignn_plugin.testing.suite import *  # noqa: F403
