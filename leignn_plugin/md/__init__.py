"""Molecular dynamics with LEIGNN: an ASE calculator, ensemble runs (``leignn-md run``) and analyses.

``LEIGNNCalculator`` is imported when first used: it needs fairchem 1.10's environment, while the
analyses (``leignn-md analyze``) are plain numpy and ASE and run next to either fairchem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leignn_plugin.md.calculator import LEIGNNCalculator

__all__ = ["LEIGNNCalculator"]


def __getattr__(name: str):
    if name == "LEIGNNCalculator":
        from leignn_plugin.md.calculator import LEIGNNCalculator

        return LEIGNNCalculator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
