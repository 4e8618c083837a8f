"""fairchem 2.x's ``ParallelMLIPPredictUnit`` (Ray workers) on a LEIGNN checkpoint, every load of it checked.

``ParallelMLIPPredictUnit`` takes a checkpoint path, never a model: it builds an ``MLIPPredictUnit`` from
the file in this process (for the task list), another in this process at the first ``predict`` (rank 0)
and one in each Ray worker process, each through fairchem's ``torch.load(weights_only=False)``. Here the
file is checked first (:func:`read_inference_checkpoint`), the units of this process are built under
:func:`checked_loads`, and Ray is started with a worker set-up hook (:func:`check_loads_in_worker`) that
makes every worker's ``torch.load`` the checked one before anything is loaded there.

What the workers share is one graph: the unit sets up fairchem's graph-parallel group over them, and
LEIGNN's backbone splits the batch's atoms across the workers (``graph_parallel.py``), every worker
returning the whole result; rank 0's comes back. This is how one very large structure runs on several
devices, from ``FAIRChemCalculator`` or fairchem-lammps; many small structures gain nothing from it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray
import torch
import torch.distributed as dist
from fairchem.core.common import gp_utils
from fairchem.core.units.mlip_unit.api.inference import guess_inference_settings
from fairchem.core.units.mlip_unit.predict import ParallelMLIPPredictUnit

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.fairchem2.checkpoint import checked_load, checked_loads, read_inference_checkpoint

SETUP_HOOK = f"{__name__}.check_loads_in_worker"


def check_loads_in_worker() -> None:
    """Ray's ``worker_process_setup_hook``: from here on this worker process's ``torch.load`` is the checked one."""
    torch.load = checked_load()


def load_is_checked() -> bool:
    """Whether this process's ``torch.load`` is the checked one (asked of a worker by the tests)."""
    return bool(getattr(torch.load, "checked", False))


class CheckedParallelPredictUnit(ParallelMLIPPredictUnit):
    """The parallel unit whose rank 0, built in this process at the first ``predict``, loads checked too."""

    def predict(self, data, *args, **kwargs) -> dict[str, torch.Tensor]:
        with checked_loads():
            return super().predict(data, *args, **kwargs)

    def close(self) -> None:
        """End the workers: leave fairchem's graph-parallel group and process group, which rank 0 set up in this
        process (any later LEIGNN here would otherwise still split its atoms over them), and stop Ray."""
        if gp_utils.initialized():
            gp_utils.cleanup_gp()
        if dist.is_initialized():
            dist.destroy_process_group()
        ray.shutdown()


def _start_ray(num_cpus: int) -> None:
    """Start a local Ray whose workers load checked; refuse a Ray this process started without that."""
    if ray.is_initialized():
        hook = ray.get_runtime_context().runtime_env.get("worker_process_setup_hook")
        if hook != SETUP_HOOK:
            raise CheckpointError("Ray is already running in this process, and its workers would load the "
                                  "checkpoint unchecked: call load_parallel_predict_unit before ray.init (it "
                                  "starts Ray itself)")
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"worker_process_setup_hook": SETUP_HOOK})


def load_parallel_predict_unit(path: str | Path, workers: int = 2, device: str = "cpu",
                               inference_settings: object = "batch",
                               num_cpus: int | None = None) -> CheckedParallelPredictUnit:
    """fairchem's ``ParallelMLIPPredictUnit`` of the LEIGNN checkpoint ``path`` on ``workers`` Ray workers,
    checked as :func:`load_predict_unit` checks (see above). Ray is started here with ``num_cpus`` (default:
    the machine's cores, at least ``workers``); end it with ``unit.close()``."""
    if workers < 1:
        raise CheckpointError(f"workers must be at least 1, got {workers}")
    read_inference_checkpoint(path)
    _start_ray(num_cpus if num_cpus is not None else max(workers, os.cpu_count() or 1))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with checked_loads():
            return CheckedParallelPredictUnit(str(path), device=device,
                                              inference_settings=guess_inference_settings(inference_settings),
                                              num_workers=workers, num_workers_per_node=workers,
                                              log_level=logging.WARNING)
    finally:  # the unit reconfigures the root logger (logging.basicConfig(force=True)): the caller's comes back
        root.handlers[:] = handlers
        root.setLevel(level)
