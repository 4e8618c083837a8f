"""One MD run with a LEIGNN checkpoint: integrator, trajectory, CSV log and a temperature guard.

Writes to the output folder ``md.traj`` (ASE trajectory with energies, forces and momenta),
``md_log.csv`` (time, potential/kinetic/total energy, temperature, pressure where the model gives
stress) and ``run.json`` (settings and outcome; read by ``leignn-md analyze``). Every setting is checked
before anything is read or written. A folder that already holds a run is refused unless ``overwrite``
is set; the new run is written beside it (``md.files.StagedRun``) and replaces it only once its first
step is done, so a run that fails to start loses nothing. The starting structure is checked like every
structure the calculator sees (``leignn_plugin.graph.sanity``); atoms that come too close during the run
stop it like the temperature guard does.
"""

from __future__ import annotations

import csv
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io import Trajectory
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from tqdm import tqdm

from leignn_plugin.errors import StructureError, UsageError
from leignn_plugin.graph import check_structures
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.md.ensembles import ENSEMBLES, NEEDS_STRESS, EnsembleSettings, make_dynamics
from leignn_plugin.md.files import LOG, RUN_INFO, RUN_OUTPUTS, TRAJECTORY, StagedRun, check_output
from leignn_plugin.md.structure import read_structure
from leignn_plugin.outputs import refuse_input_as_output, write_text

LOG_COLUMNS = ("step", "time_ps", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV",
               "temperature_K", "pressure_bar", "volume_A3")


class RunStopped(Exception):
    """The run left the sane range (temperature, finite energy); the message says where and why."""


@dataclass
class RunSettings:
    """Everything one ``leignn-md run`` needs; times in fs, temperatures in K."""

    checkpoint: Path
    structure: Path
    out: Path
    ensemble: EnsembleSettings
    steps: int
    index: int = -1
    repeat: tuple[int, int, int] = (1, 1, 1)
    device: str = "cpu"
    dtype: str = "float32"
    skin: float = 1.0
    graph_method: str | None = None
    compiled: bool = False
    edge_chunk_mib: float | None = 512.0
    interval: int = 10
    t_min: float = 0.1
    t_max: float = 1.0e5
    keep_velocities: bool = False
    progress: bool = True
    min_distance: float | None = None  # Å; None: the model's min_distance
    overwrite: bool = False
    trust_checkpoint: bool = False  # full unpickling of the checkpoint: only for files from a trusted source


@dataclass
class RunResult:
    """Outcome of a run: steps done, simulated time, speed and why it stopped early, if it did."""

    steps_done: int
    simulated_ps: float
    wall_s: float
    stopped: bool
    stop_reason: str | None
    neighbor_builds: int
    frames: int
    extra: dict = field(default_factory=dict)


def _number(flag: str, value: object, unit: str = "", minimum: float | None = None, positive: bool = False) -> None:
    """``value`` is a finite number (and above ``minimum``, or above 0 with ``positive``); else one line naming ``flag``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        need = "a positive number" if positive else (f"a number >= {minimum:g}" if minimum is not None
                                                     else "a finite number")
        raise UsageError(f"{flag} must be {need}{f' ({unit})' if unit else ''}, got {value}")


def _integer(flag: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{flag} must be an integer >= {minimum}, got {value}")


def check_settings(settings: RunSettings) -> None:
    """Every setting of the run, before anything is read or written: numbers finite and in range."""
    ensemble = settings.ensemble
    if ensemble.name not in ENSEMBLES:
        raise UsageError(f"unknown ensemble '{ensemble.name}'; choose one of {', '.join(ENSEMBLES)}")
    _integer("--steps", settings.steps, 1)
    _integer("--interval", settings.interval, 1)
    _integer("--seed", ensemble.seed, 0)
    if len(settings.repeat) != 3 or not all(isinstance(n, int) and n >= 1 for n in settings.repeat):
        raise UsageError(f"--repeat takes three positive integers, got {tuple(settings.repeat)}")
    _number("--timestep", ensemble.timestep_fs, "fs", positive=True)
    _number("--temperature", ensemble.temperature_K, "K", minimum=0.0)
    _number("--friction", ensemble.friction_per_fs, "1/fs", minimum=0.0)
    _number("--tdamp", ensemble.tdamp_fs, "fs", positive=True)
    _number("--pressure", ensemble.pressure_bar, "bar")
    _number("--pdamp", ensemble.pdamp_fs, "fs", positive=True)
    _number("--compressibility", ensemble.compressibility_per_bar, "1/bar", positive=True)
    _number("--skin", settings.skin, "Å", minimum=0.0)
    if settings.edge_chunk_mib is not None:
        _number("--edge-chunk-mib", settings.edge_chunk_mib, "MiB; 0 on the command line: never chunk", positive=True)
    if settings.min_distance is not None:
        _number("--min-distance", settings.min_distance, "Å; 0: no check", minimum=0.0)
    _number("--t-min", settings.t_min, "K", minimum=0.0)
    _number("--t-max", settings.t_max, "K", positive=True)
    if not settings.t_min < settings.t_max:
        raise UsageError(f"the temperature range must satisfy 0 <= t_min < t_max, got {settings.t_min}..{settings.t_max}")
    ensemble.validate()
    temperature = ensemble.temperature_K
    if not settings.keep_velocities and not settings.t_min <= temperature <= settings.t_max:
        raise UsageError(f"--temperature {temperature:g} K lies outside the sane range "
                         f"{settings.t_min:g}..{settings.t_max:g} K (--t-min/--t-max)")


def check_start(atoms: Atoms, settings: RunSettings, calc: LEIGNNCalculator) -> None:
    """The starting structure as every structure the calculator sees is checked, named by file and frame."""
    where = f"{settings.structure} (frame {settings.index})"
    calc.check_elements(atoms.numbers)
    check_structures(atoms.positions, atoms.cell.array, atoms.pbc.reshape(1, 3), [len(atoms)], atoms.numbers,
                     min_distance=calc.min_distance, max_element=calc.num_elements, name=lambda _: where,
                     setting="--min-distance", limit="the model's num_elements")


def _initial_velocities(atoms: Atoms, settings: RunSettings) -> None:
    has_momenta = bool(np.any(atoms.get_momenta()))
    if settings.keep_velocities and has_momenta:
        return
    temperature = settings.ensemble.temperature_K
    if not temperature > 0:
        raise ValueError("--temperature must be > 0 K to draw initial velocities "
                         "(or start from a file with momenta and pass --keep-velocities)")
    rng = np.random.default_rng(settings.ensemble.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng, force_temp=True)
    Stationary(atoms)
    if not any(atoms.pbc):
        ZeroRotation(atoms)


class _Recorder:
    """The per-step observer: temperature guard and progress every step, log and trajectory every interval,
    and ``started`` after the first step."""

    def __init__(self, atoms: Atoms, dyn, settings: RunSettings, writer, traj: Trajectory, bar: tqdm,
                 pressure: bool, started: Callable[[], None]) -> None:
        self.atoms, self.dyn, self.settings = atoms, dyn, settings
        self.writer, self.traj, self.bar, self.pressure = writer, traj, bar, pressure
        self.started = started  # called once the first step is done
        self.frames = 0

    def __call__(self) -> None:
        step = self.dyn.nsteps
        time_ps = step * self.settings.ensemble.timestep_fs / 1000.0
        temperature = self.atoms.get_temperature()
        if step % self.settings.interval == 0:
            self._record(step, time_ps, temperature)
        if step > 0:
            self.bar.update(1)
            self.started()
        if not math.isfinite(temperature) or not self.settings.t_min <= temperature <= self.settings.t_max:
            raise RunStopped(f"temperature {temperature:.4g} K left the range {self.settings.t_min:g}.."
                             f"{self.settings.t_max:g} K at step {step} ({time_ps:.4g} ps)")

    def _record(self, step: int, time_ps: float, temperature: float) -> None:
        potential = self.atoms.get_potential_energy()
        if not math.isfinite(potential):
            raise RunStopped(f"the potential energy became {potential} at step {step} ({time_ps:.4g} ps)")
        kinetic = self.atoms.get_kinetic_energy()
        pressure = ""
        if self.pressure:
            stress = self.atoms.get_stress(include_ideal_gas=True)  # [6] eV/Å^3
            pressure = f"{-stress[:3].mean() / units.bar:.6g}"
        volume = f"{self.atoms.get_volume():.6f}" if all(self.atoms.pbc) else ""
        self.writer.writerow([step, f"{time_ps:.6f}", f"{potential:.8f}", f"{kinetic:.8f}",
                              f"{potential + kinetic:.8f}", f"{temperature:.4f}", pressure, volume])
        self.traj.write(self.atoms)
        self.frames += 1
        self.bar.set_postfix(T=f"{temperature:.0f}K", E=f"{potential + kinetic:.4f}eV")


def run_md(settings: RunSettings, calculator: LEIGNNCalculator | None = None) -> RunResult:
    """Run ``settings.steps`` MD steps; stop early (``stopped=True``) when the temperature leaves its range
    or atoms come closer than the calculator's ``min_distance``.

    The run is written beside the old one (:class:`~leignn_plugin.md.files.StagedRun`) and replaces it
    after its first step (or when it stops before one); a run that fails before leaves ``out`` as it was.
    """
    check_settings(settings)
    out = Path(settings.out)
    check_output(out, settings.overwrite)
    for name in RUN_OUTPUTS:  # --overwrite replaces these: never the run's own inputs (--structure RUN/md.traj)
        refuse_input_as_output(out / name, [settings.structure, settings.checkpoint], replaced_folder=True)
    atoms = read_structure(settings.structure, settings.index)
    if tuple(settings.repeat) != (1, 1, 1):
        if not all(atoms.pbc[k] for k in range(3) if settings.repeat[k] > 1):
            raise ValueError(f"--repeat {settings.repeat} repeats a non-periodic axis of {settings.structure}")
        atoms = atoms.repeat(tuple(settings.repeat))
    calc = calculator or LEIGNNCalculator(settings.checkpoint, device=settings.device, dtype=settings.dtype,
                                          skin=settings.skin, graph_method=settings.graph_method,
                                          compiled=settings.compiled, edge_chunk_mib=settings.edge_chunk_mib,
                                          min_distance=settings.min_distance, min_distance_setting="--min-distance",
                                          trust_checkpoint=settings.trust_checkpoint)
    check_start(atoms, settings, calc)
    if settings.ensemble.name in NEEDS_STRESS and "stress" not in calc.implemented_properties:
        raise ValueError(f"ensemble {settings.ensemble.name} needs stress, which this model does not give "
                         "(train with direct_forces: false and regress_stress: true)")
    atoms.calc = calc
    _initial_velocities(atoms, settings)
    dyn = make_dynamics(atoms, settings.ensemble)
    info = {"settings": _jsonable(asdict(settings)), "natoms": len(atoms),
            "formula": atoms.get_chemical_formula(), "pbc": [bool(p) for p in atoms.pbc],
            "conservative": calc.potential.conservative, "used_ema": calc.potential.used_ema,
            "trajectory": TRAJECTORY, "log": LOG, "frame_interval_fs": settings.interval * settings.ensemble.timestep_fs}

    staged = StagedRun(out, settings.overwrite)
    try:
        return _integrate(atoms, dyn, calc, settings, staged, info)
    except BaseException as err:
        if not staged.published:
            staged.discard()
        else:  # the files up to here are complete; run.json says how the run ended
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            _write_info(staged.folder, {**info, "status": status, "steps_done": dyn.nsteps,
                                        "error": f"{type(err).__name__}: {err}"})
        raise


def _integrate(atoms: Atoms, dyn, calc: LEIGNNCalculator, settings: RunSettings, staged: StagedRun,
               info: dict) -> RunResult:
    """The MD loop, writing into ``staged.folder``; publishes the run after its first step."""
    folder = staged.folder
    pressure = "stress" in calc.implemented_properties and all(atoms.pbc)
    _write_info(folder, {**info, "status": "running"})
    start = time.perf_counter()
    stop_reason = None
    with open(folder / LOG, "w", newline="") as handle, Trajectory(str(folder / TRAJECTORY), "w") as traj, \
            tqdm(total=settings.steps, unit="step", desc=f"MD {settings.ensemble.name}",
                 disable=not settings.progress) as bar:
        writer = csv.writer(handle)
        writer.writerow(LOG_COLUMNS)
        recorder = _Recorder(atoms, dyn, settings, writer, traj, bar, pressure, started=staged.publish)
        dyn.attach(recorder, interval=1)
        try:
            dyn.run(settings.steps)
        except RunStopped as err:
            stop_reason = str(err)
        except StructureError as err:
            stop_reason = f"{err} at step {dyn.nsteps} ({dyn.nsteps * settings.ensemble.timestep_fs / 1000.0:.4g} ps)"
    staged.publish()  # a run that stopped before its first step is still a run, with its reason
    wall = time.perf_counter() - start
    result = RunResult(steps_done=dyn.nsteps, simulated_ps=dyn.nsteps * settings.ensemble.timestep_fs / 1000.0,
                       wall_s=wall, stopped=stop_reason is not None, stop_reason=stop_reason,
                       neighbor_builds=calc.neighbors.num_builds, frames=recorder.frames)
    result.extra["ns_per_day"] = result.simulated_ps / 1000.0 / wall * 86400.0 if wall > 0 else None
    result.extra["peak_rss_gib"] = peak_resident_gib()
    status = "stopped" if result.stopped else "finished"
    _write_info(staged.folder, {**info, "status": status, "result": asdict(result)})
    return result


def _write_info(folder: Path, info: dict) -> None:
    write_text(folder / RUN_INFO, json.dumps(info, indent=2))


def peak_resident_gib() -> float:
    """The process's peak resident memory so far (GiB): what a run needs from the machine."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
