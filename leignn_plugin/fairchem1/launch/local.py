"""Local runs: one process, or several ranks on this machine through torch's elastic launcher."""

from __future__ import annotations

import logging
import signal

from fairchem.core.common import distutils
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from leignn_plugin.fairchem1.launch import slurm_env
from leignn_plugin.fairchem1.launch.preemption import preemption_signal
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
    elastic_launch(launch, run_config)(config)
