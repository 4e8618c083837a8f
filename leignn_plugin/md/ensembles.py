"""ASE integrators for each ensemble ``leignn-md run`` offers, built from settings in MD units (fs, K, bar)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import ase
import numpy as np
from ase import Atoms, units
from ase.md.md import MolecularDynamics

ENSEMBLES = ("nve", "nvt-langevin", "nvt-nose-hoover", "nvt-bussi", "npt", "npt-mtk")
NEEDS_STRESS = frozenset({"npt", "npt-mtk"})
DESCRIPTIONS = {
    "nve": "velocity Verlet (ase.md.verlet.VelocityVerlet)",
    "nvt-langevin": "Langevin thermostat (ase.md.langevin.Langevin; --friction)",
    "nvt-nose-hoover": "Nosé-Hoover chain thermostat (ase.md.nose_hoover_chain.NoseHooverChainNVT; --tdamp)",
    "nvt-bussi": "Bussi stochastic velocity rescaling (ase.md.bussi.Bussi; --tdamp)",
    "npt": "Berendsen thermostat and barostat (ase.md.nptberendsen.NPTBerendsen; --tdamp, --pdamp)",
    "npt-mtk": "isotropic Martyna-Tobias-Klein NPT (ase.md.nose_hoover_chain.IsotropicMTKNPT)",
}


@dataclass
class EnsembleSettings:
    """Integrator settings. Times in fs, temperature in K, pressure in bar, compressibility in 1/bar."""

    name: str
    timestep_fs: float
    temperature_K: float
    friction_per_fs: float = 0.01
    tdamp_fs: float = 100.0
    pressure_bar: float = 1.01325
    pdamp_fs: float = 1000.0
    compressibility_per_bar: float = 4.57e-5
    seed: int = 0

    def validate(self) -> None:
        if self.name not in ENSEMBLES:
            raise ValueError(f"unknown ensemble '{self.name}'; choose one of {', '.join(ENSEMBLES)}")
        for label, value in (("timestep", self.timestep_fs), ("tdamp", self.tdamp_fs), ("pdamp", self.pdamp_fs)):
            if not value > 0:
                raise ValueError(f"--{label} must be > 0 fs, got {value}")
        if self.name != "nve" and not self.temperature_K > 0:
            raise ValueError(f"ensemble {self.name} needs --temperature > 0 K, got {self.temperature_K}")
        if self.name == "nvt-langevin" and not self.friction_per_fs > 0:
            raise ValueError(f"--friction must be > 0 1/fs for nvt-langevin, got {self.friction_per_fs}")


def _ase_class(module: str, name: str, ensemble: str) -> type:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f"ensemble {ensemble} needs {module}.{name}, which ASE {ase.__version__} lacks; "
                         "upgrade ase or choose another --ensemble") from None


def make_dynamics(atoms: Atoms, settings: EnsembleSettings) -> MolecularDynamics:
    """The ASE integrator for ``settings`` acting on ``atoms`` (which carries the calculator)."""
    settings.validate()
    dt = settings.timestep_fs * units.fs
    temperature = settings.temperature_K
    rng = np.random.default_rng(settings.seed)
    name = settings.name
    if name == "nve":
        cls = _ase_class("ase.md.verlet", "VelocityVerlet", name)
        return cls(atoms, timestep=dt)
    if name == "nvt-langevin":
        cls = _ase_class("ase.md.langevin", "Langevin", name)
        return cls(atoms, timestep=dt, temperature_K=temperature, friction=settings.friction_per_fs / units.fs,
                   rng=rng)
    if name == "nvt-nose-hoover":
        cls = _ase_class("ase.md.nose_hoover_chain", "NoseHooverChainNVT", name)
        return cls(atoms, timestep=dt, temperature_K=temperature, tdamp=settings.tdamp_fs * units.fs)
    if name == "nvt-bussi":
        cls = _ase_class("ase.md.bussi", "Bussi", name)
        return cls(atoms, timestep=dt, temperature_K=temperature, taut=settings.tdamp_fs * units.fs, rng=rng)
    if not all(atoms.pbc):
        raise ValueError(f"ensemble {name} needs a cell periodic along all three axes")
    if name == "npt":
        cls = _ase_class("ase.md.nptberendsen", "NPTBerendsen", name)
        return cls(atoms, timestep=dt, temperature_K=temperature, pressure_au=settings.pressure_bar * units.bar,
                   taut=settings.tdamp_fs * units.fs, taup=settings.pdamp_fs * units.fs,
                   compressibility_au=settings.compressibility_per_bar / units.bar)
    cls = _ase_class("ase.md.nose_hoover_chain", "IsotropicMTKNPT", name)
    return cls(atoms, timestep=dt, temperature_K=temperature, pressure_au=settings.pressure_bar * units.bar,
               tdamp=settings.tdamp_fs * units.fs, pdamp=settings.pdamp_fs * units.fs)
