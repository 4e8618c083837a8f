"""Naming conventions for the energy and force fields of an LMDB sample.

``fairchem`` is what :class:`fairchem.core.preprocessing.AtomsToGraphs` writes (``energy``,
``forces``, uint8 ``atomic_numbers``).  ``oc20`` is the layout of the official OC20 S2EF LMDBs
(``y``, ``force``, float32 ``atomic_numbers``), which fairchem configs read with
``key_mapping: {y: energy, force: forces}``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch_geometric.data import Data


class Convention(str, Enum):
    """Which field names (and atomic-number dtype) a dataset is written with."""

    OC20 = "oc20"
    FAIRCHEM = "fairchem"

    @property
    def energy_key(self) -> str:
        """Field holding the total energy."""
        return "y" if self is Convention.OC20 else "energy"

    @property
    def forces_key(self) -> str:
        """Field holding the per-atom forces."""
        return "force" if self is Convention.OC20 else "forces"


ENERGY_KEYS: tuple[str, ...] = ("energy", "y")
FORCES_KEYS: tuple[str, ...] = ("forces", "force")


def apply_convention(data: Data, convention: Convention) -> Data:
    """Rename ``energy``/``forces`` and cast ``atomic_numbers`` for the OC20 convention.

    Args:
        data: A sample as AtomsToGraphs produced it (fairchem convention).
        convention: The target convention.

    Returns:
        The same object, modified in place for OC20 and untouched for fairchem.
    """
    if convention is Convention.FAIRCHEM:
        return data
    if "energy" in data:
        data.y = data.energy
        del data.energy
    if "forces" in data:
        data.force = data.forces
        del data.forces
    data.atomic_numbers = data.atomic_numbers.to(torch.float32)
    return data
