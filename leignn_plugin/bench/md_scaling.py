"""MD step time and peak memory against system size (periodic fcc Cu supercells).

Each step is a full leapfrog step of direct-force MD: the neighbour search (vesin), the
edge-chunked LEIGNN forward pass under ``torch.no_grad`` and the integrator update. The smallest size
is run once untimed first, so one-time costs do not land on any size. Peak memory is
the process's resident-set high-water mark during the step (reset per size where Linux allows), on CUDA
the device memory allocated (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from torch import nn
from tqdm import tqdm

from leignn_plugin.accel import chunk_size_for, set_edge_chunk_size
from leignn_plugin.bench.baselines import host_leignn, leignn_kwargs
from leignn_plugin.bench.measure import measure_call, resident_mib
from leignn_plugin.graph import neighbor_graph
from leignn_plugin.testing.structures import to_batch

# The paper's MD settings: 512 channels, 4 layers, cutoff 5 Å, at most 50 neighbours.
MD_MODEL = dict(hidden_channels=512, num_layers=4, cutoff=5.0, max_neighbors=50)


def copper_supercell(num_atoms: int, seed: int = 0, lattice: float = 3.61) -> Atoms:
    """A rattled periodic fcc Cu supercell with about ``num_atoms`` atoms (4 r^3 for integer r)."""
    if num_atoms < 4:
        raise ValueError(f"a Cu supercell needs at least 4 atoms, got {num_atoms}")
    rep = max(1, round((num_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=lattice, cubic=True).repeat((rep, rep, rep))
    atoms.rattle(0.05, seed=seed)
    return atoms


@dataclass
class ScalingPoint:
    """One system size: median step time, the neighbour search's share and the peak memory
    (resident set on CPU, allocated device memory on CUDA)."""

    atoms: int
    edges: int
    steps: int
    step_s: float
    step_cpu_s: float
    graph_s: float
    peak_rss_mib: float
    step_increase_mib: float

    @property
    def atom_steps_per_s(self) -> float:
        """MD throughput: atoms times steps per second of wall time."""
        return self.atoms / self.step_s

    def to_dict(self) -> dict:
        return {**asdict(self), "atom_steps_per_s": self.atom_steps_per_s}


class LeapfrogMD:
    """Direct-force leapfrog MD on one periodic structure (ASE units: eV, Å, amu).

    One force evaluation per step: v <- v + F(x)/m dt, then x <- x + v dt (velocities live at half
    steps), so every timed step is exactly one neighbour search and one forward pass.
    """

    def __init__(self, model: nn.Module, atoms: Atoms, timestep_fs: float = 1.0, temperature_k: float = 300.0,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.batch = to_batch([atoms]).to(device)
        self.dt = timestep_fs * units.fs
        masses = torch.as_tensor(atoms.get_masses(), dtype=self.batch.pos.dtype, device=self.batch.pos.device)
        self.inv_mass = (1.0 / masses).unsqueeze(-1)  # [N, 1]
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(units.kB * temperature_k / atoms.get_masses())[:, None]
        velocities = torch.as_tensor(rng.normal(size=(len(atoms), 3)) * sigma, dtype=self.batch.pos.dtype,
                                     device=self.batch.pos.device)
        self.velocities = velocities - velocities.mean(0)  # [N, 3], no drift

    def step(self) -> None:
        with torch.no_grad():
            forces = self.model(self.batch)["forces"]  # [N, 3]
        self.velocities = self.velocities + forces * self.inv_mass * self.dt
        self.batch.pos = self.batch.pos + self.velocities * self.dt


def md_model_kwargs(**overrides) -> dict:
    """LEIGNN's constructor arguments at the paper's MD size, with vesin's linear-scaling graph."""
    return leignn_kwargs(graph_method="vesin", **{**MD_MODEL, **overrides})


def md_model(seed: int = 0, chunk_mib: float = 512.0, device: torch.device | str = "cpu", **overrides) -> nn.Module:
    """LEIGNN at the paper's MD size (the installed host's model) on ``device`` with vesin's graph and edge
    chunks of about ``chunk_mib``."""
    kwargs = md_model_kwargs(**overrides)
    torch.manual_seed(seed)
    model = host_leignn(**kwargs).to(device).eval()
    set_edge_chunk_size(model, chunk_size_for(kwargs["hidden_channels"], chunk_mib))
    return model


def _memory_base_mib(device: torch.device) -> float:
    """What the step's peak is added to: the resident set on CPU, the allocated device memory on CUDA."""
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else resident_mib()


def run_md_scaling(sizes: list[int], steps: int = 1, seed: int = 0, chunk_mib: float = 512.0,
                   device: torch.device | str = "cpu", **model_overrides) -> list[ScalingPoint]:
    """Time ``steps`` MD steps (after the initial force call) for each size in ``sizes`` on ``device``."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = torch.device(device)
    model = md_model(seed, chunk_mib, device, **model_overrides)
    LeapfrogMD(model, copper_supercell(min(sizes), seed), seed=seed, device=device).step()
    points = []
    for size in tqdm(sizes, desc="MD sizes", leave=False):
        atoms = copper_supercell(size, seed)
        md = LeapfrogMD(model, atoms, seed=seed, device=device)
        batch = md.batch
        start = time.perf_counter()
        edge_index = neighbor_graph(batch.pos, batch.cell, batch.pbc, batch.natoms, model.backbone.cutoff,
                                    model.backbone.max_neighbors, method=model.backbone.graph_method).edge_index
        graph_s = time.perf_counter() - start
        base = _memory_base_mib(device)
        timings = [measure_call(md.step, batch.pos.device) for _ in range(steps)]
        increase = max(t.peak_mib for t in timings)
        points.append(ScalingPoint(
            atoms=len(atoms), edges=int(edge_index.shape[1]), steps=steps,
            step_s=statistics.median(t.wall_s for t in timings),
            step_cpu_s=statistics.median(t.cpu_s for t in timings),
            graph_s=graph_s, peak_rss_mib=base + increase, step_increase_mib=increase,
        ))
        del md, batch, edge_index
    return points
