"""LAMMPS through fairchem-lammps with a conservative LEIGNN trained by ``fairchem -c``: NVE conserves the
total energy (``configs/fairchem2/lammps/nve_cu_slab.in``, 200 steps of 1 fs)."""

from __future__ import annotations

import re

import numpy as np
from conftest import REPO, run

INPUT = REPO / "configs" / "fairchem2" / "lammps" / "nve_cu_slab.in"


def test_nve_conserves_energy(conservative_run, tmp_path):
    done = run(["leignn-fairchem2", "lammps", str(INPUT), "--checkpoint", str(conservative_run.checkpoint),
                "--task", "demo"], cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    natoms = sum(int(n) for n in re.findall(r"Created (\d+) atoms", done.stdout))
    table = np.loadtxt(tmp_path / "nve_energy.dat")  # step, ke, pe, etotal
    table = table[table[:, 0] > 0]  # at step 0 the model has not been called yet (pe reads 0)
    assert table[-1, 0] == 200 and natoms > 100
    kinetic, total = table[:, 1], table[:, 3]
    assert kinetic.std() > 1e-3  # atoms move and exchange energy with the potential
    drift = float(np.abs(total - total[0]).max())
    print(f"NVE {natoms} atoms, 200 fs: largest total-energy change {drift:.2e} eV ({drift / natoms:.2e} eV/atom)")
    assert drift / natoms < 1e-4, drift
