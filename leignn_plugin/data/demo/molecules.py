"""MD17-style molecule frames for the demo, sampled by Langevin MD on the GFN2-xTB surface.

The MD and GFN2-xTB labelling run in a separate torch-free interpreter (see
:mod:`gfn2_md_worker` for why) with one OpenMP thread, which makes the frames bit-reproducible
for a given seed.  :class:`MoleculeSampling` starts that process so that it can run alongside
the slab relaxations, and turns its output into non-periodic :class:`Frame` objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import numpy as np
from ase import Atoms

from leignn_plugin.data.demo.spec import MoleculeSpec
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.frame import Frame

WORKER = Path(__file__).with_name("gfn2_md_worker.py")

_LOADER = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('leignn_gfn2_md_worker', sys.argv[1]); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "sys.exit(module.main(sys.argv[2:]))"
)


@dataclass(frozen=True)
class MoleculeRun:
    """One trajectory: which molecule at which temperature, and its kept frames."""

    sid: int
    molecule: str
    temperature: float
    frames: list[Frame]


class MoleculeSampling:
    """The GFN2-xTB MD child process; start it, do other work, then :meth:`collect`.

    Args:
        spec: What to sample.
        seed: Seed of the velocity and thermostat random streams.
    """

    def __init__(self, spec: MoleculeSpec, seed: int) -> None:
        self.spec = spec
        self._scratch = tempfile.TemporaryDirectory(prefix="leignn-demo-md-")
        self._output = Path(self._scratch.name) / "molecules.npz"
        payload = json.dumps({**asdict(self.spec), "seed": seed})
        environment = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LOADER, str(WORKER), payload, str(self._output)],
            cwd=self._scratch.name,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def collect(self) -> list[MoleculeRun]:
        """Wait for the child and return its trajectories (raises :class:`DataError` on failure)."""
        try:
            _, stderr = self._process.communicate()
            if self._process.returncode != 0:
                lines = [line for line in stderr.strip().splitlines() if line.strip()]
                detail = lines[-1] if lines else f"exit status {self._process.returncode}"
                raise DataError(f"demo: GFN2-xTB molecule sampling failed ({detail})")
            with np.load(self._output) as arrays:
                return self._runs(arrays)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child if it is still running and remove its scratch directory."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._scratch.cleanup()

    def _runs(self, arrays: np.lib.npyio.NpzFile) -> list[MoleculeRun]:
        runs = []
        for sid, (name, temperature) in enumerate(product(self.spec.molecules, self.spec.temperatures)):
            numbers = arrays[f"run{sid}_numbers"]
            positions, energies, forces = (
                arrays[f"run{sid}_{k}"] for k in ("positions", "energies", "forces")
            )
            frames = [
                Frame(
                    atoms=Atoms(numbers=numbers, positions=positions[fid], pbc=False),
                    energy=float(energies[fid]),
                    forces=forces[fid],
                    stress=None,
                    sid=sid,
                    fid=fid,
                    origin=f"demo molecule {name} at {temperature:g} K: frame {fid}",
                )
                for fid in range(len(energies))
            ]
            runs.append(MoleculeRun(sid=sid, molecule=name, temperature=temperature, frames=frames))
        return runs
