"""Choose between a local run, a rank of an ``srun`` step, and a SLURM submission, as fairchem's ``main`` does."""

from __future__ import annotations

import argparse

from leignn_plugin.fairchem1.launch import slurm_env
from leignn_plugin.fairchem1.launch.local import run_local
from leignn_plugin.fairchem1.launch.relaxations import check_relaxations_left


def dispatch(args: argparse.Namespace, config: dict) -> None:
    """Submit with submitit (``--submit``), run as one rank of a multi-task ``srun`` step, or run here."""
    check_relaxations_left(config)
    if args.submit:
        from leignn_plugin.fairchem1.launch.slurm import submit

        submit(args, config)
    elif slurm_env.in_slurm_step() and slurm_env.step_size() > 1:
        from leignn_plugin.fairchem1.launch.slurm import run_srun_task

        run_srun_task(config)
    else:
        run_local(config, args.num_gpus)
