"""Preemption: turn SLURM's pre-timeout signal into a checkpoint at a step boundary, then a requeue.

fairchem's Runner saves from inside the signal handler, mid-step: the saved step, weights, optimizer and
scheduler can then disagree by one step. Here the handler only records the request; every rank checks it
before fetching the next batch (one all-reduce, so all ranks stop after the same step), rank 0 saves the
full training state and requeues the job, and all ranks exit. Under submitit the requeue goes through
submitit's own handler (which calls ``PluginRunner.checkpoint`` and rewrites the job pickle); a job started
by ``sbatch``/``srun`` is requeued with ``scontrol requeue`` and resumes from its checkpoint directory.
SIGTERM (SLURM requeuing or preempting the job itself) saves the same way and exits without requeuing.

SLURM signals every process of the step (the proctrack plugin walks the process tree or cgroup), each node
on its own schedule: the preemption signal can reach a rank twice, or only after the ranks have agreed to
requeue, and then also the ``scontrol requeue`` rank 0 runs, which the requeue itself follows with SIGTERM.
So once the ranks agree to requeue they ignore the preemption signal for good (it never saves or requeues
twice, not even through submitit's handler once that is back), and rank 0 ignores SIGTERM too while it
saves and requeues; scontrol inherits both (an ignored signal stays ignored across ``exec``) and finishes
its request whatever arrives.

Local runs use the same guard with SIGINT (Ctrl-C) and SIGTERM meaning "save and stop": the step in
progress finishes, the full training state is written, and ``--checkpoint`` resumes from it. A second
Ctrl-C stops at once without saving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from fairchem.core.common import distutils
from submitit.core.job_environment import SignalHandler

from leignn_plugin.fairchem1.launch import slurm_env

# submitit's variable naming the preemption signal (default USR2, the one the sbatch templates ask for).
SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
PREEMPTED_EXIT_CODE = 255
STOPPED_EXIT_CODE = 128 + signal.SIGTERM
# What the ranks agree to do at the next step boundary (the largest request wins).
NONE, STOP, REQUEUE = 0, 1, 2


class TrainingStopped(SystemExit):
    """Training ended early on a signal, after saving; ``message`` says where the state went."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def preemption_signal() -> signal.Signals:
    """The signal SLURM sends before the time limit (``--signal=USR2@120``), as submitit reads it."""
    return signal.Signals["SIG" + os.environ.get(SIGNAL_ENV, "USR2")]


def is_submitit_handler(handler: Any) -> bool:
    """True for the bound ``checkpoint_and_try_requeue`` that submitit installs in its jobs."""
    return isinstance(getattr(handler, "__self__", None), SignalHandler)


class _BoundaryIterator:
    """Calls ``on_boundary`` before each batch is fetched, i.e. after the previous step has fully finished."""

    def __init__(self, batches: Iterator, on_boundary: Callable[[], None]) -> None:
        self._batches = batches
        self._on_boundary = on_boundary

    def __iter__(self) -> _BoundaryIterator:
        return self

    def __next__(self) -> Any:
        self._on_boundary()
        return next(self._batches)


class BoundaryLoader:
    """A train loader that reports step boundaries; length and attributes are the wrapped loader's."""

    def __init__(self, loader: Any, on_boundary: Callable[[], None]) -> None:
        self.loader = loader
        self._on_boundary = on_boundary

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> _BoundaryIterator:
        return _BoundaryIterator(iter(self.loader), self._on_boundary)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def slurm_actions() -> dict[signal.Signals, int]:
    """Inside a SLURM job: the preemption signal saves and requeues, SIGTERM saves and exits."""
    return {preemption_signal(): REQUEUE, signal.SIGTERM: STOP}


def local_actions() -> dict[signal.Signals, int]:
    """A local run: Ctrl-C (SIGINT) and SIGTERM save and exit."""
    return {signal.SIGINT: STOP, signal.SIGTERM: STOP}


class PreemptionGuard:
    """Context manager around ``task.run()`` of a training run: on a signal, save at a step boundary.

    ``actions`` maps each signal handled to what it asks for (:func:`slurm_actions` in a SLURM job,
    :func:`local_actions` otherwise). REQUEUE saves and requeues the job; STOP saves and exits with
    128 + the signal's number, SLURM (or the user, with ``--checkpoint``) decides what comes next.
    ``save_checkpoint`` runs on rank 0 and returns the path written; under submitit, the preemption
    signal goes through submitit's handler instead.
    """

    def __init__(self, trainer: Any, save_checkpoint: Callable[[], str | None],
                 actions: dict[signal.Signals, int] | None = None) -> None:
        self.trainer = trainer
        self.save_checkpoint = save_checkpoint
        self.actions = actions if actions is not None else slurm_actions()
        self.local = signal.SIGINT in self.actions
        self.action = NONE
        self.received: signal.Signals | None = None
        self.requeuing = False
        self._previous: dict[int, Any] = {}
        self._loader: Any = None

    def __enter__(self) -> PreemptionGuard:
        for signum in self.actions:
            self._previous[signum] = signal.signal(signum, self._request)
        self._loader = self.trainer.train_loader
        self.trainer.train_loader = BoundaryLoader(self._loader, self._at_boundary)
        return self

    def __exit__(self, *exc: object) -> None:
        self.trainer.train_loader = self._loader
        for signum, previous in self._previous.items():
            if self.requeuing and signum == preemption_signal():
                continue  # stays ignored: the job is requeued, a late signal must not requeue it again
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def _request(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.action != NONE and distutils.get_world_size() == 1:
            # a second Ctrl-C: stop now, without saving (with local ranks, the launcher forwards the first)
            raise KeyboardInterrupt
        action = self.actions[signal.Signals(signum)]
        if action >= self.action:
            self.received = signal.Signals(signum)
        self.action = max(self.action, action)
        what = "checkpointing and requeuing" if action == REQUEUE else "checkpointing and exiting"
        hint = " (Ctrl-C again to stop without saving)" if self.local and distutils.get_world_size() == 1 else ""
        logging.warning(f"rank {distutils.get_rank()}: received {signal.Signals(signum).name}; "
                        f"{what} at the end of the current step{hint}")

    def _agreed(self) -> int:
        """The strongest action any rank was asked for (every rank calls this once per step, so it pairs up)."""
        if distutils.get_world_size() == 1:
            return self.action
        code = torch.tensor([float(self.action)], device=self.trainer.device)  # [1]
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return int(code.item())

    def _at_boundary(self) -> None:
        # The trainer has already advanced ``step``/``epoch`` to the step whose batch is being fetched.
        action = self._agreed()
        if action == NONE:
            return
        completed = self.trainer.step - 1
        self.trainer.step = completed
        self.trainer.epoch = completed / len(self._loader)
        self._stop(completed, action)

    def _stop(self, completed: int, action: int) -> None:
        flush_logger(self.trainer)
        if action == REQUEUE:
            self.requeuing = True
            signal.signal(preemption_signal(), signal.SIG_IGN)
        message = f"stopped after step {completed}"
        try:
            if distutils.is_master() and action == REQUEUE:
                self._save_and_requeue(completed)
            elif distutils.is_master():
                message = self._save(completed)
        finally:
            _barrier()
        if action == REQUEUE:
            raise SystemExit(PREEMPTED_EXIT_CODE)
        signum = self.received or signal.SIGTERM
        raise TrainingStopped(128 + int(signum) if self.local else STOPPED_EXIT_CODE, message)

    def _save_and_requeue(self, completed: int) -> None:
        logging.warning(f"preempted: saving the training state after step {completed} and requeuing")
        previous = self._previous.get(preemption_signal())
        with signals_ignored(preemption_signal(), signal.SIGTERM):
            if is_submitit_handler(previous):
                previous(preemption_signal(), None)  # saves via PluginRunner.checkpoint, rewrites the job pickle
            else:
                requeue(self.save_checkpoint())

    def _save(self, completed: int) -> str:
        path = self.save_checkpoint()
        name = self.received.name if self.received is not None else "a signal"
        if self.local:
            message = (f"interrupted by {name}: saved the training state after step {completed} to {path}; "
                       f"resume with --checkpoint {path}")
        else:
            message = (f"terminated: saved the training state after step {completed} to {path}; a requeued "
                       "job resumes from it")
        logging.warning(message)
        return message


@contextlib.contextmanager
def signals_ignored(*signums: signal.Signals) -> Iterator[None]:
    """Ignore ``signums`` here and in every command started meanwhile, then restore the handlers.

    A child process inherits an ignored signal through ``exec`` (a Python handler it would not), so a
    signal SLURM sends to the whole step cannot kill the ``scontrol`` started inside this block.
    """
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def flush_logger(trainer: Any) -> None:
    """Write out buffered logger events (tensorboard keeps up to two minutes in memory)."""
    writer = getattr(getattr(trainer, "logger", None), "writer", None)
    if writer is not None and hasattr(writer, "flush"):
        writer.flush()


def _barrier() -> None:
    """Hold every rank until rank 0 has saved and requeued; a vanished peer only ends the wait."""
    try:
        distutils.synchronize()
    except RuntimeError as err:
        logging.warning(f"rank {distutils.get_rank()}: barrier after preemption failed ({err})")


def requeue(checkpoint: str | None) -> None:
    """``scontrol requeue`` this job; on failure say how to resume by hand, and exit with an error.

    Call it inside :func:`signals_ignored` (preemption signal and SIGTERM), as the guard does.
    """
    jid = slurm_env.job_id()
    done = subprocess.run(["scontrol", "requeue", str(jid)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip()
        if done.returncode < 0:
            reason = f"scontrol died of signal {-done.returncode}"
        raise SystemExit(f"leignn: error: could not requeue SLURM job {jid} ({reason}); "
                         f"resume with --checkpoint {checkpoint}")
    logging.warning(f"requeued SLURM job {jid}; it resumes from {checkpoint}")
