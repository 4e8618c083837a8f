"""Which fairchem host is installed, and the one place that imports its host package.

The package root imports the installed host through :func:`import_host`, and so does
``tools_host.installed`` (what the tools use), so that no tool ever names a host package itself.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

HOST_PACKAGES = {1: "leignn_plugin.fairchem1", 2: "leignn_plugin.fairchem2"}
"""The host package of each fairchem-core major version."""


def fairchem_major() -> int | None:
    """The major version of the importable fairchem-core, None when there is none."""
    try:
        import fairchem.core  # noqa: F401
    except ImportError:
        return None
    try:
        return int(metadata.version("fairchem-core").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def import_host() -> ModuleType | None:
    """The installed fairchem's host package, imported (which registers it with fairchem and with the
    tools); None without fairchem or for a fairchem no host serves."""
    package = HOST_PACKAGES.get(fairchem_major())
    return None if package is None else importlib.import_module(package)
