"""Measuring one model on one batch: parameters, FLOPs, time and peak memory.

Peak memory on CPU is the process's resident-set high-water mark (``VmHWM``), reset before each
measurement through ``/proc/self/clear_refs`` and reported as the rise above the resident size at
the start; where that reset is not possible it falls back to ``ru_maxrss`` (never reset, so only the
first large measurement is meaningful). On CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; fairchem's scale factors are excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as torch's flop counter sees them (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def resident_mib() -> float:
    """Current resident set size of this process in MiB."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc keeps them otherwise),
    so that the next measurement's resident-set rise counts every page it touches."""
    gc.collect()
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Timing:
    """Wall and CPU seconds of one call, and the peak memory it added (MiB)."""

    wall_s: float
    cpu_s: float
    peak_mib: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_call(fn: Callable[[], object], device: torch.device) -> Timing:
    """Run ``fn`` once and return its wall time, process CPU time and peak memory increase."""
    release_freed_memory()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device) / 2**20
    else:
        start_mem = resident_mib()
        reset = _reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        hwm = _status_kib("VmHWM") if reset else None
        peak = hwm / 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Timing(wall_s=wall, cpu_s=cpu, peak_mib=max(0.0, peak - start_mem))


def model_batch(batch, device: torch.device):
    """A private copy of the batch on ``device`` (some models set ``pos.requires_grad`` on theirs)."""
    return batch.clone().to(device)


def flat_energy(out: dict) -> torch.Tensor:
    """Energies as [B] whatever shape a model returns ([B] or [B, 1])."""
    return out["energy"].reshape(-1)


class ModelRunner:
    """One model with its optimizer and batch copy: forward+forces and a training step as callables."""

    def __init__(self, model: nn.Module, batch, device: torch.device, seed: int = 0) -> None:
        self.model = model.to(device)
        self.batch = model_batch(batch, device)
        self.device = device
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        gen = torch.Generator().manual_seed(seed)
        n_graphs, n_atoms = int(self.batch.natoms.numel()), int(self.batch.pos.shape[0])
        self.energy_target = torch.randn(n_graphs, generator=gen).to(device)  # [B]
        self.force_target = torch.randn(n_atoms, 3, generator=gen).to(device)  # [N, 3]

    def forward_forces(self) -> None:
        """Inference as fairchem runs it: eval mode under no_grad (gradient models enable grad inside)."""
        self.model.eval()
        with torch.no_grad():
            out = self.model(self.batch)
            out["forces"].sum().item()

    def train_step(self) -> None:
        """One optimizer step on energy MAE + force L2-MAE, fairchem's S2EF loss shape."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(self.batch)
        energy_err = (flat_energy(out) - self.energy_target).abs().mean()
        force_err = torch.linalg.vector_norm(out["forces"] - self.force_target, dim=-1).mean()
        (energy_err + force_err).backward()
        self.optimizer.step()
