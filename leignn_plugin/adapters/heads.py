"""The one rule for which LEIGNN head fits which backbone, for the hydra heads of both hosts."""

from __future__ import annotations

from collections.abc import Mapping

NEEDS = {"forces": True, "conservative": False}
"""The ``direct_forces`` a head of each role needs (with ``regress_forces: true``); the energy head fits any."""


def head_problem(role: str, regress_forces: bool, direct_forces: bool, names: Mapping[str, str]) -> str | None:
    """Why a head of ``role`` (``energy``, ``forces``, ``conservative``) cannot sit on a backbone with
    these force options, or None; ``names``: how the host names each head role in its configs."""
    direct = NEEDS.get(role)
    if direct is None or (regress_forces and direct_forces == direct):
        return None
    instead = (f"use {names['conservative']} for gradient forces" if direct
               else f"use {names['energy']} and {names['forces']} for direct forces")
    return (f"{names[role]} needs a backbone with regress_forces: true and direct_forces: {str(direct).lower()}; "
            f"{instead}")
