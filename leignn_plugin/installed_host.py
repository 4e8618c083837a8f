"""Which fairchem host is installed: asked by the package root (to register that host) and by the
testing helpers (to build that host's batches), without importing the package root."""

from __future__ import annotations

from importlib import metadata


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
