"""Molecular dynamics with LEIGNN: an ASE calculator, ensemble runs (``leignn-md run``) and analyses."""

from __future__ import annotations

from leignn_plugin.md.calculator import LEIGNNCalculator

__all__ = ["LEIGNNCalculator"]
