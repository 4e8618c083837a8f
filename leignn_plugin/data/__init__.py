"""Datasets for LEIGNN in fairchem's formats: converters, the demo data, and statistics.

The ``leignn-data`` command (:mod:`leignn_plugin.data.cli`) wraps these functions:

* :func:`convert_ase_files`: any ``ase.io.read`` file (extxyz, .traj, vasprun.xml, OUTCAR, ...);
* :func:`convert_md17`: sGDML MD17 / rMD17 ``.npz`` archives into train/val/test;
* :func:`build_demo`: the embedded demo data (EMT slabs for S2EF/IS2RE, GFN2-xTB molecules);
* :func:`convert_lmdb_to_aselmdb`: fairchem 1.x LMDB datasets into fairchem 2.x ``.aselmdb`` ones;
* :func:`inspect_dataset`: counts, statistics and linear energy references.

Each writes fairchem 1.x LMDBs or, with ``output=OutputFormat.ASELMDB``, fairchem 2.x ``.aselmdb``
files.  Every problem with the input raises :class:`DataError` with a one-line message.

Names are imported on first use: the LMDB side needs fairchem 1.x and torch_geometric, which a
fairchem 2.x environment lacks, while ``.aselmdb`` output needs neither.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Convention": "conventions",
    "DataError": "errors",
    "DatasetStats": "inspect",
    "Frame": "frame",
    "OutputFormat": "shards",
    "WriteSummary": "shards",
    "build_demo": "demo",
    "convert_ase_files": "pipelines",
    "convert_lmdb_to_aselmdb": "pipelines",
    "convert_md17": "pipelines",
    "find_datasets": "inspect",
    "inspect_dataset": "inspect",
    "write_aselmdb_shards": "aselmdb_writer",
    "write_lmdb_shards": "lmdb_writer",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module when it is first asked for (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
