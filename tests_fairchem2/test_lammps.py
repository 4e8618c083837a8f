"""LAMMPS through fairchem-lammps with a conservative LEIGNN trained by ``fairchem -c``: NVE conserves the
total energy (``configs/fairchem2/lammps/nve_cu_slab.in``, 200 steps of 1 fs), every row of its energy
file is real (step 0 too), and fairchem-lammps finds nothing to warn about in the input; also with the forces
from two Ray workers sharing the structure by graph parallelism."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, run

from leignn_plugin.fairchem2.lammps import loop_timing, read_energy_file

INPUT = REPO / "configs" / "fairchem2" / "lammps" / "nve_cu_slab.in"
SELF_WARNING = "Input script contains force field command"
"""What fairchem-lammps logs when the input's text names a pair, bond, angle or dihedral style."""


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-graph-parallel-ray-workers"])
def test_nve_conserves_energy(conservative_run, tmp_path, workers):
    done = run(["leignn-fairchem2", "lammps", str(INPUT), "--checkpoint", str(conservative_run.checkpoint),
                "--task", "demo", "--workers", str(workers)], cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert SELF_WARNING not in done.stdout + done.stderr
    seconds, steps, natoms = loop_timing(done.stdout)
    table = read_energy_file(tmp_path / "nve_energy.dat")  # step, ke, pe, etotal
    assert table[0, 0] == 0 and table[-1, 0] == steps == 200 and len(table) == 21
    assert (table[:, 2] != 0).all(), table[:3]  # the model's energy is set before the first row is printed
    assert natoms == 194
    kinetic, total = table[:, 1], table[:, 3]
    assert kinetic.std() > 1e-3  # atoms move and exchange energy with the potential
    drift = float(np.abs(total - total[0]).max())
    print(f"NVE {natoms} atoms, 200 fs in {seconds:.1f} s: largest total-energy change from step 0 {drift:.2e} eV "
          f"({drift / natoms:.2e} eV/atom)")
    assert drift / natoms < 1e-4, drift


def test_example_input_names_no_force_field_command():
    """fairchem-lammps looks for the words in the input's text, comments included."""
    from fairchem.lammps.lammps_fc import FORCE_COMMANDS

    text = INPUT.read_text()
    assert not [command for command in FORCE_COMMANDS if command in text]
