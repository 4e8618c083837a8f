"""Run a LEIGNN ``HydraModel`` graph-parallel over several CPU ranks (gloo), the way fairchem's workers do.

Each rank joins one process group, sets up fairchem's graph-parallel group over all ranks
(``gp_utils.setup_graph_parallel_groups``, what ``ParallelMLIPPredictUnit``'s workers call), builds the same
model from the same core weights, converts the same structures with ``AtomicData.from_ase`` and predicts; rank
0 hands back the outputs, every rank its time per step and peak memory. One rank runs the plain model. Used by
the equality tests and the scaling benchmark (``graph_parallel_bench.py``).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ase import Atoms

from leignn_plugin.bench.measure import release_freed_memory, resident_mib
from leignn_plugin.fairchem2.checkpoint import load_predict_unit
from leignn_plugin.fairchem2.harness import atoms_batch, potential


@dataclass
class GraphParallelCase:
    """One prediction every rank makes: ``structures`` as one batch, by the ``HydraModel`` of the
    representation ``options`` with the core weights ``core_state`` in ``dtype``, or by fairchem's predict unit
    of the LEIGNN inference checkpoint ``checkpoint`` (read by the project's checked loader)."""

    structures: list[Atoms]
    options: dict | None = None
    core_state: dict | None = None
    checkpoint: str | None = None
    dtype: torch.dtype = torch.float64


@dataclass
class GraphParallelJob:
    """The cases every rank runs, each ``steps`` times (with ``steps`` > 1 the first one untimed), with
    ``threads`` torch threads per rank; ``grad=False`` predicts without autograd (direct-force inference)."""

    cases: list[GraphParallelCase]
    steps: int = 1
    threads: int = 1
    grad: bool = True


@dataclass
class RankResult:
    """One rank's measurements per case and, from rank 0, each case's whole outputs (numpy arrays)."""

    rank: int
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    base_rss_mib: float = float("nan")
    peak_rss_mib: float = float("nan")


def _peak_rss_mib() -> float:
    """This process's resident-set high-water mark in MiB (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _predictor(case: GraphParallelCase) -> tuple[Callable[[object], dict[str, torch.Tensor]], str | None]:
    """The model of ``case`` as a function of a batch returning flat outputs, and the dataset its batches
    are named for (a predict unit's first)."""
    if case.checkpoint is None:
        return potential(case.options, case.core_state, case.dtype), None
    unit = load_predict_unit(case.checkpoint)
    return unit.predict, next(iter(unit.dataset_to_tasks))


def _predict(job: GraphParallelJob, rank: int) -> RankResult:
    """This process's part of ``job``: build, predict, measure."""
    torch.set_num_threads(job.threads)
    predictors = [_predictor(case) for case in job.cases]
    release_freed_memory()
    result = RankResult(rank=rank, base_rss_mib=resident_mib())
    for case, (predict, task) in zip(job.cases, predictors):
        times = []
        for step in range(job.steps):
            batch = atoms_batch(case.structures, case.dtype, task)
            start = time.perf_counter()
            with torch.set_grad_enabled(job.grad):
                out = predict(batch)
            if step > 0 or job.steps == 1:
                times.append(time.perf_counter() - start)
        result.step_s.append(float(np.median(times)))
        result.outputs.append({name: value.detach().cpu().numpy() for name, value in out.items()} if rank == 0
                              else {})
    result.peak_rss_mib = _peak_rss_mib()
    return result


def _rank_main(rank: int, world_size: int, store: str, job: GraphParallelJob, queue) -> None:
    """One spawned rank: the plain model when alone, else a member of fairchem's graph-parallel group."""
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch's notes on fairchem's collectives
    if world_size == 1:
        queue.put(_predict(job, 0))
        return
    from fairchem.core.common import gp_utils

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        gp_utils.setup_graph_parallel_groups(world_size, "gloo")
        queue.put(_predict(job, rank))
        dist.barrier()
    finally:
        if gp_utils.initialized():
            gp_utils.cleanup_gp()
        dist.destroy_process_group()


def run_graph_parallel(job: GraphParallelJob, world_size: int) -> list[RankResult]:
    """``job`` on ``world_size`` spawned ranks (1: the plain model); every rank's result, by rank.

    A rank that fails ends the others and raises here (``torch.multiprocessing``'s process context)."""
    with tempfile.TemporaryDirectory(prefix="leignn-gp-") as tmp:
        queue = mp.get_context("spawn").Queue()
        ranks = mp.start_processes(_rank_main, args=(world_size, os.path.join(tmp, "store"), job, queue),
                                   nprocs=world_size, join=False, start_method="spawn")
        results: list[RankResult] = []
        while len(results) < world_size:
            try:
                results.append(queue.get(timeout=1.0))
            except Empty:
                ranks.join(timeout=0)
        while not ranks.join():
            pass
    return sorted(results, key=lambda r: r.rank)
