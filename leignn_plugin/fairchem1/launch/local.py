"""Local runs: one process, or several ranks on this machine through torch's elastic launcher."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from fairchem.core.common import distutils
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from leignn_plugin.fairchem1.launch import slurm_env
from leignn_plugin.fairchem1.launch.preemption import TrainingStopped, preemption_signal
from leignn_plugin.fairchem1.launch.rank_errors import usage_errors_from_ranks
from leignn_plugin.fairchem1.launch.runner import run_config


def run_local(config: dict, num_ranks: int) -> None:
    """Run ``config`` in this process (one rank) or in ``num_ranks`` local ranks."""
    if num_ranks <= 1:
        distutils.setup_env_local()
        run_config(config)
        return
    logging.info(f"Running in local mode with {num_ranks} ranks")
    # LMDB environments cannot be shared with forked data-loader workers of spawned ranks.
    if "optim" in config:
        config["optim"]["num_workers"] = 0
    if slurm_env.job_id() is not None:
        # SLURM signals every process of the step: the ranks checkpoint on it, the launcher must outlive it.
        signal.signal(preemption_signal(), signal.SIG_IGN)
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=num_ranks, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    started = time.time()
    try:
        with usage_errors_from_ranks():
            elastic_launch(launch, run_config)(config)
    except SignalException as err:
        raise ranks_stopped(config, signal.Signals(err.sigval), started) from None


def ranks_stopped(config: dict, signum: signal.Signals, started: float) -> TrainingStopped:
    """What the launcher reports when Ctrl-C or SIGTERM stopped its ranks.

    torch's launcher forwards the signal to every rank and gives them 30 s to exit: a training rank
    finishes its step and rank 0 saves the training state (see :class:`PreemptionGuard`).
    """
    path = Path(config.get("run_dir", "./")) / "checkpoints" / str(config.get("timestamp_id")) / "checkpoint.pt"
    if config.get("mode") == "train" and path.is_file() and path.stat().st_mtime >= started:
        message = (f"interrupted by {signum.name}: the ranks saved the training state to {path}; "
                   f"resume with --checkpoint {path}")
    else:
        message = f"interrupted by {signum.name}"
    return TrainingStopped(128 + int(signum), message)
