"""Turn a :class:`Frame` into the ``torch_geometric`` sample fairchem's LMDB datasets read.

The conversion is delegated to fairchem's own :class:`AtomsToGraphs` (so field names, dtypes,
position wrapping and the ``fixed`` mask from FixAtoms are exactly fairchem's), with three
additions it lacks: the frame id ``fid``, ``pbc`` shaped ``[1, 3]`` so a batch collates to
``[B, 3]``, and verbatim extra fields such as ``y_relaxed``/``pos_relaxed``.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress
from fairchem.core.preprocessing import AtomsToGraphs
from torch_geometric.data import Data

from leignn_plugin.data.conventions import Convention, apply_convention
from leignn_plugin.data.frame import ExtraValue, Frame


class FrameConverter:
    """Convert frames to fairchem samples in one convention.

    Args:
        convention: Field names for energy and forces (see :mod:`conventions`).
        with_labels: Write ``energy`` and ``forces`` (S2EF); off for IS2RE initial structures.
        with_stress: Write the 3x3 ``stress`` as AtomsToGraphs does.
    """

    def __init__(
        self, convention: Convention, *, with_labels: bool = True, with_stress: bool = False
    ) -> None:
        self.convention = convention
        self.with_labels = with_labels
        self.with_stress = with_stress
        self._a2g = AtomsToGraphs(
            r_edges=False,
            r_energy=with_labels,
            r_forces=with_labels,
            r_stress=with_stress,
            r_fixed=True,
            r_pbc=True,
        )

    def convert(self, frame: Frame) -> Data:
        """Build the sample for one (already validated) frame."""
        atoms = frame.atoms.copy()
        if self.with_labels or self.with_stress:
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=None if frame.energy is None else float(frame.energy),
                forces=None if frame.forces is None else np.asarray(frame.forces, dtype=np.float64),
                stress=None if frame.stress is None else full_3x3_to_voigt_6_stress(frame.stress),
            )
        data = self._a2g.convert(atoms, sid=int(frame.sid))
        data.fid = int(frame.fid)
        data.pbc = data.pbc.view(1, 3)
        for key, value in frame.extras.items():
            data[key] = _extra_to_field(value)
        return apply_convention(data, self.convention)


def _extra_to_field(value: ExtraValue) -> float | int | torch.Tensor:
    """Scalars stay Python numbers (as OC20's ``y_relaxed``); arrays become float32 tensors."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return torch.from_numpy(np.asarray(value, dtype=np.float32))
