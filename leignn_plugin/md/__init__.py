"""Molecular dynamics with LEIGNN: an ASE calculator, ensemble runs (``leignn-md run``) and analyses.

Everything here runs next to either fairchem: the calculator reads a checkpoint of either host through
``leignn_plugin.checkpoints`` and runs the core potential; ``LEIGNNCalculator`` is imported when first
used, so the analyses (``leignn-md analyze``, plain numpy and ASE) start quickly.
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
