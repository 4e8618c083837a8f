"""leignn-plugin: the LEIGNN interatomic potential as a fairchem model.

The package is a plain PyTorch core (``core``), one neighbour search (``graph``), swappable speed
paths (``accel``) and host adapters. Importing it under fairchem 1.x registers, in fairchem's
registry, the model ``leignn``, the hydra backbone ``leignn_backbone`` and the heads
``leignn_energy_head``, ``leignn_force_head`` and ``leignn_conservative_head``; without fairchem
the core and the graph still import.
"""

from __future__ import annotations

from importlib import metadata

__version__ = "0.1.0"


def _fairchem_major() -> int | None:
    """The major version of the importable fairchem-core, None when there is none."""
    try:
        import fairchem.core  # noqa: F401
    except ImportError:
        return None
    try:
        return int(metadata.version("fairchem-core").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


HOST_FAIRCHEM = _fairchem_major()

if HOST_FAIRCHEM == 1:
    from leignn_plugin import fairchem1  # registers the names in fairchem's registry

    globals().update({name: getattr(fairchem1, name) for name in fairchem1.__all__})
    __all__ = ["HOST_FAIRCHEM", "__version__", *fairchem1.__all__]
else:
    __all__ = ["HOST_FAIRCHEM", "__version__"]
