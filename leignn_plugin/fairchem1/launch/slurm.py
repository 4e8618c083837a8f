"""SLURM launches: ``--submit`` through submitit, and ranks started by ``srun`` from an sbatch script.

The submission mirrors fairchem's ``_cli.main`` (same executor folder ``<logdir>/%j``, parameters, sweeps
and experiment log) with two changes: the job runs ``PluginRunner`` so every rank imports the plugin,
and ``--cpu`` asks for ``--num-gpus`` tasks per node, no GPUs (fairchem asks for GPUs regardless) and
``srun --kill-on-bad-exit`` so one failed rank ends the job.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
from pathlib import Path

from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.launch import slurm_env
from leignn_plugin.fairchem1.launch.runner import PluginRunner, run_config


def executor_parameters(args: argparse.Namespace, config: dict) -> dict:
    """submitit parameters for ``args``: fairchem's, without a GPU request on CPU runs."""
    parameters = {
        "name": args.identifier,
        "mem_gb": args.slurm_mem,
        "timeout_min": args.slurm_timeout * 60,
        "slurm_partition": args.slurm_partition,
        "cpus_per_task": config["optim"].get("num_workers", 0) + 1,
        "tasks_per_node": args.num_gpus,
        "nodes": args.num_nodes,
        "slurm_additional_parameters": config.get("slurm"),
        "slurm_qos": args.slurm_qos,
        "slurm_account": args.slurm_account,
    }
    if args.cpu:
        # A rank that dies or gives up (collective timeout) ends the whole step instead of leaving peers waiting.
        parameters["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
    else:
        parameters["gpus_per_node"] = args.num_gpus
    return parameters


def submit(args: argparse.Namespace, config: dict) -> list[str]:
    """Submit ``config`` (or one job per point of ``--sweep-yml``) and return the SLURM job ids."""
    from fairchem.core.common.utils import create_grid, save_experiment_log
    from submitit import AutoExecutor

    if shutil.which("sbatch") is None:
        raise UsageError("--submit needs SLURM, but sbatch is not on PATH (submit from a login node, "
                         "or drop --submit to run here)")
    if "optim" not in config:
        raise UsageError(f"config {args.config_yml} has no 'optim' section (needed for the job's CPU count)")
    configs = create_grid(config, args.sweep_yml) if args.sweep_yml else [config]
    executor = AutoExecutor(folder=args.logdir / "%j", cluster="slurm", slurm_max_num_timeout=3)
    executor.update_parameters(**executor_parameters(args, config))
    for each in configs:
        each["slurm"] = copy.deepcopy(executor.parameters)
        each["slurm"]["folder"] = str(executor.folder)
    logging.info(f"Submitting {len(configs)} job(s) to SLURM")
    jobs = executor.map_array(PluginRunner(), configs)
    for job, each in zip(jobs, configs):
        run_id = each.get("timestamp_id") or "<timestamp-id, named in the rank 0 log>"
        logging.info(f"Submitted job {job.job_id}: logs in {executor.folder.parent / job.job_id}, "
                     f"checkpoints in {Path(each.get('run_dir') or '.') / 'checkpoints' / run_id}")
    log_file = save_experiment_log(args, jobs, configs)
    logging.info(f"Experiment log saved to: {log_file}")
    return [job.job_id for job in jobs]


def run_srun_task(config: dict) -> None:
    """Run this ``srun`` task as one rank of the step (sbatch scripts call ``srun python main.py``).

    Without ``--timestamp-id`` the run is named after the job, so a requeued job finds its checkpoint.
    """
    tasks = slurm_env.step_size()
    if tasks != config["world_size"]:
        raise UsageError(f"srun started {tasks} tasks but --num-nodes x --num-gpus is {config['world_size']}; "
                         "make them match (e.g. --num-nodes $SLURM_NNODES --num-gpus $SLURM_NTASKS_PER_NODE)")
    timestamp_id = config.get("timestamp_id")
    if timestamp_id is None:
        suffix = f"-{config['identifier']}" if config.get("identifier") else ""
        timestamp_id = f"slurm-{slurm_env.job_id()}{suffix}"
    run_config({**config, "submit": True, "timestamp_id": timestamp_id})
