"""Embedded demo data generated from real calculators (EMT slabs, GFN2-xTB molecules)."""

from __future__ import annotations

from leignn_plugin.data.demo.build import build_demo
from leignn_plugin.data.demo.spec import DEMO_SIZES, DemoSpec, MoleculeSpec, SlabSpec

__all__ = ["DEMO_SIZES", "DemoSpec", "MoleculeSpec", "SlabSpec", "build_demo"]
