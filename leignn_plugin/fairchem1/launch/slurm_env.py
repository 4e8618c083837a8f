"""What a rank started by SLURM (``srun`` or a submitit job) learns from its environment.

fairchem's own SLURM set-up (``distutils.setup`` with ``submit``) assumes GPUs and NCCL; CPU ranks instead
get torch's ``env://`` variables from here and join a gloo group through fairchem's local path.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass

# Rendezvous ports are spread over this range by job id so that jobs sharing a node do not collide; it ends
# below Linux's ephemeral ports (32768 and up), which any outgoing connection on the node may be holding.
PORT_BASE = 20000
PORT_SPAN = 12000


@dataclass(frozen=True)
class SlurmTask:
    """One task of a SLURM job step: its place in the step and the step's first node."""

    job_id: str
    rank: int
    local_rank: int
    world_size: int
    node_name: str
    nodelist: str


def job_id() -> str | None:
    """The id ``scontrol requeue`` takes (``ARRAY_TASK`` form for array jobs), or None outside SLURM."""
    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def in_slurm_step() -> bool:
    """True in a task started by ``srun``: not the batch script, and not a local rank spawned under one task."""
    return ("SLURM_STEP_ID" in os.environ and "SLURM_PROCID" in os.environ
            and "TORCHELASTIC_RUN_ID" not in os.environ)


def step_size() -> int:
    """Number of tasks in the current SLURM step (1 outside one)."""
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))


def current_task() -> SlurmTask:
    """This task's rank, local rank, step size and node list, read from SLURM's variables."""
    env = os.environ
    return SlurmTask(
        job_id=env["SLURM_JOB_ID"],
        rank=int(env["SLURM_PROCID"]),
        local_rank=int(env.get("SLURM_LOCALID", "0")),
        world_size=step_size(),
        node_name=env.get("SLURMD_NODENAME", socket.gethostname()),
        nodelist=env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "")),
    )


def first_node_address(nodelist: str) -> str:
    """Network address of the first node of ``nodelist`` (its NodeAddr, else its name), where rank 0 runs."""
    names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                           check=True, timeout=60).stdout.split()
    first = names[0]
    shown = subprocess.run(["scontrol", "show", "node", "-o", first], capture_output=True, text=True, timeout=60)
    for field in shown.stdout.split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1]
    return first


def rendezvous_port(slurm_job_id: str) -> int:
    """A port every task of the job derives alike, different for jobs with nearby ids."""
    return PORT_BASE + int(slurm_job_id) % PORT_SPAN


def export_torch_env(task: SlurmTask) -> None:
    """Set ``MASTER_ADDR/MASTER_PORT/RANK/LOCAL_RANK/WORLD_SIZE`` so ``init_process_group`` joins the step."""
    os.environ.update({
        "MASTER_ADDR": first_node_address(task.nodelist),
        "MASTER_PORT": str(rendezvous_port(task.job_id)),
        "RANK": str(task.rank),
        "LOCAL_RANK": str(task.local_rank),
        "WORLD_SIZE": str(task.world_size),
    })
