"""A fairchem Runner whose module imports the plugin, so every rank that unpickles it knows ``leignn``.

fairchem's own ``runner_wrapper`` lives in ``fairchem.core._cli``; ranks started by elastic_launch or
submitit import only that module, and a config naming ``leignn`` would not resolve there. On top of
fairchem's Runner this one lets CPU ranks of a SLURM job form a gloo group, checkpoints on preemption at a
step boundary, keeps the LR schedule in step on resume, and names a lost rank clearly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from fairchem.core._cli import Runner
from fairchem.core.common import distutils
from fairchem.core.common.utils import new_trainer_context
from submitit.helpers import DelayedSubmission

import leignn_plugin.fairchem1  # noqa: F401  (registers the models in this process)
from leignn_plugin.data.safe_records import safe_records
from leignn_plugin.fairchem1.launch import slurm_env
from leignn_plugin.fairchem1.launch.atomic_save import atomic_checkpoints
from leignn_plugin.fairchem1.launch.preemption import (
    PreemptionGuard,
    flush_logger,
    local_actions,
    slurm_actions,
)
from leignn_plugin.fairchem1.launch.rank_errors import reported_to_launcher
from leignn_plugin.fairchem1.launch.rank_failure import lost_peer, rank_lost_error
from leignn_plugin.fairchem1.launch.resume import align_scheduler
from leignn_plugin.fairchem1.safe_load import safe_loading


def rank_config(config: dict) -> dict:
    """The config this rank hands to fairchem: CPU ranks of a SLURM step join through ``env://`` (gloo).

    fairchem's SLURM branch (``submit``) hard-codes NCCL and ``torch.cuda.set_device``; with ``--cpu`` the
    step's rank layout is exported as torch's variables and fairchem's local branch initialises gloo.
    GPU runs keep fairchem's branch unchanged.
    """
    if not (config.get("submit") and config.get("cpu") and slurm_env.in_slurm_step()):
        return config
    task = slurm_env.current_task()
    if task.world_size != config["world_size"]:
        raise ValueError(f"SLURM started {task.world_size} tasks but the run expects {config['world_size']} "
                         "ranks (--num-nodes x --num-gpus)")
    slurm_env.export_torch_env(task)
    return {**config, "submit": False}


class PluginRunner(Runner):
    """fairchem's Runner; on preemption it requeues itself (not fairchem's class) from the checkpoint."""

    def __call__(self, config: dict) -> None:
        self.config = config
        self.task = None
        self.trainer = None
        # fairchem's torch.load/np.load calls load weights only and dataset records unpickle only data, unless
        # the user passed --trust-checkpoint / --trust-data
        with safe_loading(bool(config.get("trust_checkpoint"))), safe_records(bool(config.get("trust_data"))), \
                atomic_checkpoints(), new_trainer_context(config=rank_config(config)) as ctx:
            self.task = ctx.task
            self.trainer = ctx.trainer
            rank, world = distutils.get_rank(), distutils.get_world_size()
            node = os.environ.get("SLURMD_NODENAME", socket.gethostname())
            logging.info(f"rank {rank}/{world} on {node} (pid {os.getpid()}), mode {config['mode']}, "
                         f"checkpoints in {self.trainer.config['cmd']['checkpoint_dir']}")
            self.task.setup(self.trainer)
            training = config["mode"] == "train"
            if training:
                align_scheduler(self.trainer)
            self._run_task(rank, world, training)
            if training:
                logging.info(f"rank {rank}/{world} finished training at step {self.trainer.step}")
            flush_logger(self.trainer)

    def _run_task(self, rank: int, world: int, training: bool) -> None:
        """Run the task; training checkpoints on preemption (SLURM) or interruption (local, Ctrl-C or
        SIGTERM) at a step boundary; a lost rank is named clearly."""
        actions = slurm_actions() if slurm_env.job_id() is not None else local_actions()
        guard = (PreemptionGuard(self.trainer, self._save_training_state, actions)
                 if training else contextlib.nullcontext())
        try:
            with guard:
                self.task.run()
        except RuntimeError as err:
            if world > 1 and lost_peer(err):
                error = rank_lost_error(err, rank, world, self.config.get("timeout", 30))
                logging.error(str(error))
                raise error from err
            raise

    def _save_training_state(self) -> str | None:
        return self.trainer.save(checkpoint_file="checkpoint.pt", training_state=True)

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """submitit's preemption hook: save the training state and resubmit this runner to resume from it."""
        if self.trainer is None or self.config.get("mode") != "train":
            return DelayedSubmission(PluginRunner(), self.config)
        delayed = super().checkpoint(*args, **kwargs)
        return DelayedSubmission(PluginRunner(), *delayed.args, **delayed.kwargs)


def run_config(config: dict) -> None:
    """Entry point of one rank: build the trainer and task from ``config`` and run them (bad input met
    in a launched rank goes to the launcher as one message: ``rank_errors``)."""
    with reported_to_launcher():
        PluginRunner()(config)
