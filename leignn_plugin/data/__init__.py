"""Datasets for LEIGNN in fairchem's LMDB format: converters, the demo data, and statistics.

The ``leignn-data`` command (:mod:`leignn_plugin.data.cli`) wraps these functions:

* :func:`convert_ase_files`: any ``ase.io.read`` file (extxyz, .traj, vasprun.xml, OUTCAR, ...);
* :func:`convert_md17`: sGDML MD17 / rMD17 ``.npz`` archives into train/val/test;
* :func:`build_demo`: the embedded demo data (EMT slabs for S2EF/IS2RE, GFN2-xTB molecules);
* :func:`inspect_dataset`: counts, statistics and linear energy references.

Every problem with the input raises :class:`DataError` with a one-line message.
"""

from __future__ import annotations

from leignn_plugin.data.conventions import Convention
from leignn_plugin.data.demo import build_demo
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame
from leignn_plugin.data.inspect import DatasetStats, find_datasets, inspect_dataset
from leignn_plugin.data.lmdb_writer import WriteSummary, write_lmdb_shards
from leignn_plugin.data.pipelines import convert_ase_files, convert_md17

__all__ = [
    "Convention",
    "DataError",
    "DatasetStats",
    "Frame",
    "WriteSummary",
    "build_demo",
    "convert_ase_files",
    "convert_md17",
    "find_datasets",
    "inspect_dataset",
    "write_lmdb_shards",
]
