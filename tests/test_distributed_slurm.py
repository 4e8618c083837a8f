"""Training on a real two-node SLURM cluster (leignn_plugin/testing/slurm_cluster.py) through ``main.py --submit``.

One uninterrupted two-node CPU run is the reference: prediction from its checkpoint, and the runs that are
preempted (USR2 before the time limit) or requeued (SIGTERM) must end bit-for-bit where it ends, with
every step's learning rate logged once and equal to the reference's. The preempted runs meet SLURM's
signal a second time while rank 0's ``scontrol requeue`` runs (a late delivery to the step); the tests
without a cluster drive the preemption guard through the same race, under submitit and under ``srun``.

Waits poll job states and logs instead of sleeping for a fixed time; each limit (``*_TIMEOUT``) is
several times what the wait takes on two cores shared with two CPU-bound processes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from test_distributed import (
    REPO,
    assert_same_training_state,
    checkpoint_of,
    main_py,
    scalars,
    training_config,
    write_config,
    write_slab_lmdb,
)

from leignn_plugin.fairchem1.launch.preemption import (
    PREEMPTED_EXIT_CODE,
    SIGNAL_ENV,
    PreemptionGuard,
    slurm_actions,
)
from leignn_plugin.fairchem1.launch.rank_failure import lost_peer, rank_lost_error
from leignn_plugin.testing.slurm_cluster import (  # noqa: F401  (slurm_cluster: the session fixture)
    FINISHED,
    PARTITION,
    SlurmCluster,
    signal_held,
    slurm_cluster,
)

EPOCHS = 50
STEPS = EPOCHS * 4  # 16 training slabs, 2 per rank and step on 2 ranks
SUBMIT = ["--submit", "--num-nodes", "2", "--num-gpus", "1", "--cpu", "--slurm-partition", PARTITION,
          "--slurm-timeout", "1", "--slurm-mem", "1", "--seed", "3", "--print-every", "5"]
STEP_LINE = re.compile(r"step: ([0-9.e+]+)")
# Limits of the waits, each several times what it takes on two cores shared with two CPU-bound processes.
SUBMIT_TIMEOUT = 180  # main.py --submit, or --mode predict
STEP_TIMEOUT = 180  # a job starts and reaches a step
JOB_TIMEOUT = 300  # a job ends (after a requeue, both attempts)


@dataclass
class SlurmRun:
    run_dir: Path
    timestamp_id: str
    job_id: str
    output: Path | None = None  # the job's single output file (sbatch), else submitit's per-rank files

    def log(self, rank: int) -> str:
        """Everything rank ``rank`` wrote, all attempts (with sbatch: everything every rank wrote)."""
        if self.output is not None:
            return self.output.read_text(errors="replace") if self.output.exists() else ""
        folder = self.run_dir / "logs" / self.job_id
        return "".join((folder / f"{self.job_id}_{rank}_log.{ext}").read_text(errors="replace")
                       for ext in ("out", "err") if (folder / f"{self.job_id}_{rank}_log.{ext}").exists())

    def last_step(self) -> int:
        steps = [float(m) for m in STEP_LINE.findall(self.log(0))]
        return int(max(steps)) if steps else 0


@pytest.fixture(scope="module")
def slurm_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slurm_data")
    data = {split: write_slab_lmdb(root / split, count, seed)
            for split, count, seed in (("train", 16, 0), ("val", 8, 1), ("test", 6, 2))}
    config = training_config(data, batch_size=2, max_epochs=EPOCHS, lr_steps=STEPS, eval_every=50,
                             checkpoint_every=50)
    return write_config(root / "config.yml", config)


def submit(cluster: SlurmCluster, config: Path, run_dir: Path, timestamp_id: str, *extra: str,
           env: dict[str, str] | None = None) -> SlurmRun:
    """``main.py --mode train --submit`` from ``run_dir`` (job environment ``env``, else the cluster's); the job."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = main_py(["--mode", "train", "--config-yml", str(config), *SUBMIT, "--run-dir", str(run_dir),
                    "--timestamp-id", timestamp_id, *extra], run_dir, timeout=SUBMIT_TIMEOUT,
                   env=env or cluster.env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"Submitted job (\d+)", done.stdout + done.stderr)
    assert found, (done.stdout + done.stderr)[-3000:]
    return SlurmRun(run_dir=run_dir, timestamp_id=timestamp_id, job_id=found.group(1))


def sbatch_cpu_template(cluster: SlurmCluster, config: Path, run_dir: Path, run_id: str,
                        env: dict[str, str] | None = None) -> SlurmRun:
    """``sbatch slurm/train_cpu.sbatch CONFIG`` on two nodes with one rank each (options given on the command line)."""
    env = {**(env or cluster.env), "LEIGNN_HOME": str(REPO), "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1", "RUN_ID": run_id}
    done = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=1G", "--time=30",
         f"--partition={PARTITION}", f"--chdir={run_dir}", f"--output={run_dir}/sbatch-%j.out",
         str(REPO / "slurm" / "train_cpu.sbatch"), str(config), "--run-dir", str(run_dir), "--seed", "3",
         "--print-every", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().split(";")[0]
    return SlurmRun(run_dir=run_dir, timestamp_id=run_id, job_id=job_id, output=run_dir / f"sbatch-{job_id}.out")


def late_signal_scontrol(bin_dir: Path, signal_name: str, then: str) -> Path:
    """A directory holding an ``scontrol`` that, on ``requeue``, first lets SLURM's ``signal_name`` reach rank 0
    (its parent) and itself, as a late delivery to every process of the step does, then runs ``then``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\nif [ "$1" = requeue ]; then kill -s {signal_name} "$PPID" "$$"; fi\n{then}\n')
    script.chmod(0o755)
    return bin_dir


def late_signal_env(cluster: SlurmCluster, bin_dir: Path) -> dict[str, str]:
    """The cluster's environment with the real ``scontrol`` behind one hit by a late USR2 (jobs inherit PATH)."""
    real = shutil.which("scontrol", path=cluster.env["PATH"])
    assert real is not None
    late_signal_scontrol(bin_dir, "USR2", f'exec {shlex.quote(real)} "$@"')
    return {**cluster.env, "PATH": f"{bin_dir}{os.pathsep}{cluster.env['PATH']}"}


def wait_for_step(run: SlurmRun, cluster: SlurmCluster, step: int, timeout: float = STEP_TIMEOUT) -> int:
    """Wait until rank 0 has logged ``step`` (or later); the last step logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.last_step() >= step:
            return run.last_step()
        info = cluster.job(run.job_id)
        assert info.get("JobState") not in FINISHED, f"{info}\n{run.log(0)[-3000:]}"
        time.sleep(0.2)
    pytest.fail(f"job {run.job_id} did not reach step {step} in {timeout:.0f} s:\n{run.log(0)[-3000:]}")


def rank_pids(run: SlurmRun) -> list[int]:
    """Process ids of ranks 0 and 1 in the run's latest attempt (each rank logs its pid first)."""
    pids = []
    for rank in (0, 1):
        found = re.findall(rf"rank {rank}/2 on node\d+ \(pid (\d+)\)", run.log(rank))
        assert found, run.log(rank)[-3000:]
        pids.append(int(found[-1]))
    return pids


def signal_held_ranks(run: SlurmRun, cluster: SlurmCluster, signum: signal.Signals, *command: str) -> None:
    """Run the SLURM ``command`` that sends ``signum`` to the job while both ranks are held (SIGSTOP) until it
    has reached each: however slowly SLURM delivers it, it lands at the step where the run was held."""
    signal_held(cluster, rank_pids(run), signum, *command)


@pytest.fixture(scope="module")
def reference_run(slurm_cluster, slurm_config, tmp_path_factory) -> SlurmRun:  # noqa: F811
    run = submit(slurm_cluster, slurm_config, tmp_path_factory.mktemp("reference"), "reference")
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    assert info["JobState"] == "COMPLETED", f"{info}\n{run.log(0)[-4000:]}\n{run.log(1)[-2000:]}"
    return run


def assert_lr_continuous(run: SlurmRun, reference: SlurmRun) -> None:
    """Every step 1..STEPS was logged, with the learning rate of the uninterrupted run."""
    got = scalars(run.run_dir, run.timestamp_id, "train/lr")
    want = scalars(reference.run_dir, reference.timestamp_id, "train/lr")
    assert sorted(want) == list(range(1, STEPS + 1))
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-6)


@pytest.mark.slurm
def test_two_node_cpu_training_then_predict(reference_run, slurm_cluster, slurm_config):  # noqa: F811
    """Both ranks train on their own node, one checkpoint is written, and ``--mode predict`` reads it."""
    info = slurm_cluster.job(reference_run.job_id)
    assert info["NumNodes"] == "2" and info["Restarts"] == "0"
    for rank in (0, 1):
        log = reference_run.log(rank)
        assert f"rank {rank}/2 on node{rank + 1} " in log
        assert f"rank {rank}/2 finished training at step {STEPS}" in log
    assert [p.name for p in (reference_run.run_dir / "checkpoints").iterdir()] == ["reference"]
    checkpoint = reference_run.run_dir / "checkpoints" / "reference" / "checkpoint.pt"
    assert torch.load(checkpoint, map_location="cpu")["step"] == STEPS

    done = main_py(["--mode", "predict", "--config-yml", str(slurm_config), "--checkpoint", str(checkpoint),
                    "--cpu", "--run-dir", str(reference_run.run_dir), "--timestamp-id", "predict"],
                   reference_run.run_dir, timeout=SUBMIT_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    (predictions,) = (reference_run.run_dir / "results" / "predict").glob("*.npz")
    with np.load(predictions) as result:
        energy, forces = result["energy"].reshape(-1), result["forces"]
    assert energy.shape == (6,) and np.isfinite(energy).all() and np.ptp(energy) > 0
    assert np.isfinite(forces).all()


@pytest.mark.slurm
def test_preemption_signal_checkpoints_requeues_and_resumes(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                           tmp_path):
    """USR2 (SLURM's pre-timeout signal) mid-run: checkpoint at a step boundary, requeue, identical finish;
    the signal reaching rank 0 and its ``scontrol requeue`` again mid-request changes nothing."""
    run = submit(slurm_cluster, slurm_config, tmp_path / "run", "preempted",
                 env=late_signal_env(slurm_cluster, tmp_path / "bin"))
    wait_for_step(run, slurm_cluster, 20)
    signal_held_ranks(run, slurm_cluster, signal.SIGUSR2, "scancel", "--signal=USR2", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    log = run.log(0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{log[-4000:]}"
    saved = re.search(r"preempted: saving the training state after step (\d+)", log)
    assert saved and 20 <= int(saved.group(1)) < STEPS, log[-4000:]
    assert f"Requeued job {run.job_id}" in log
    assert log.count("rank 0/2 on node1 ") == 2 and "Loading checkpoint from" in log
    assert f"rank 1/2 finished training at step {STEPS}" in run.log(1)
    assert_same_training_state(STEPS, checkpoint_of(run.run_dir, "preempted"),
                               checkpoint_of(reference_run.run_dir, "reference"))
    assert_lr_continuous(run, reference_run)


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_cpu_template_preempted_and_resumed(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                   tmp_path):
    """slurm/train_cpu.sbatch (srun ranks, no submitit): USR2 checkpoints, ``scontrol requeue`` (hit by a late
    USR2 as well), identical finish."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = sbatch_cpu_template(slurm_cluster, slurm_config, run_dir, "sbatch",
                              env=late_signal_env(slurm_cluster, tmp_path / "bin"))
    wait_for_step(run, slurm_cluster, 20)
    signal_held_ranks(run, slurm_cluster, signal.SIGUSR2, "scancel", "--signal=USR2", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    log = run.log(0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{log[-4000:]}"
    assert "rank 0/2 on node1 " in log and "rank 1/2 on node2 " in log
    saved = re.search(r"preempted: saving the training state after step (\d+)", log)
    assert saved and 20 <= int(saved.group(1)) < STEPS, log[-4000:]
    assert f"requeued SLURM job {run.job_id}" in log
    assert f"rank 1/2 finished training at step {STEPS}" in log
    assert_same_training_state(STEPS, checkpoint_of(run.run_dir, "sbatch"),
                               checkpoint_of(reference_run.run_dir, "reference"))
    assert_lr_continuous(run, reference_run)


@pytest.mark.slurm
@pytest.mark.slow
def test_requeue_by_slurm_checkpoints_and_resumes(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                  tmp_path):
    """``scontrol requeue`` (SIGTERM to the ranks) mid-run: checkpoint on the way out, identical finish."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "requeued")
    wait_for_step(run, slurm_cluster, 20)
    signal_held_ranks(run, slurm_cluster, signal.SIGTERM, "scontrol", "requeue", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    log = run.log(0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{log[-4000:]}"
    saved = re.search(r"terminated: saved the training state after step (\d+)", log)
    assert saved and 20 <= int(saved.group(1)) < STEPS, log[-4000:]
    assert_same_training_state(STEPS, checkpoint_of(run.run_dir, "requeued"),
                               checkpoint_of(reference_run.run_dir, "reference"))
    assert_lr_continuous(run, reference_run)


@pytest.mark.slurm
@pytest.mark.slow
def test_killed_rank_fails_the_job_with_a_clear_message(slurm_cluster, slurm_config, tmp_path):  # noqa: F811
    """SIGKILL to rank 1 mid-run: rank 0 stops with an explanation and the job fails instead of hanging."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "killed", "--optim.max_epochs=100000", "--timeout=1")
    wait_for_step(run, slurm_cluster, 10)
    pid = re.search(r"rank 1/2 on node2 \(pid (\d+)\)", run.log(1))
    assert pid, run.log(1)[-3000:]
    os.kill(int(pid.group(1)), signal.SIGKILL)
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    assert info["JobState"] == "FAILED", info
    assert "rank 0 of 2: another rank of this run died or stopped responding" in run.log(0)


@pytest.mark.slurm
@pytest.mark.slow
def test_hung_rank_times_out_and_fails_the_job(slurm_cluster, slurm_config, tmp_path):  # noqa: F811
    """SIGSTOP to rank 1: rank 0's collective times out (config ``timeout``: 0.5 min, which also bounds how far
    apart the ranks may start on a loaded machine) and the job fails."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "hung", "--optim.max_epochs=100000", "--timeout=0.5")
    wait_for_step(run, slurm_cluster, 10)
    pid = re.search(r"rank 1/2 on node2 \(pid (\d+)\)", run.log(1))
    assert pid, run.log(1)[-3000:]
    os.kill(int(pid.group(1)), signal.SIGSTOP)
    info = slurm_cluster.wait(run.job_id, timeout=JOB_TIMEOUT)
    assert info["JobState"] == "FAILED", info
    assert "rank 0 of 2: another rank of this run died or stopped responding" in run.log(0)


@pytest.mark.parametrize("message", [
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 30000ms for recv operation "
    "to complete",
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:133] Timed out waiting 30000ms for send operation "
    "to complete",
    "Application timeout caused pair closure",
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:6318",
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:525] Read error [127.0.0.1]:7309: Connection reset by peer",
])
def test_what_gloo_says_of_a_hung_or_dead_peer_names_the_lost_rank(message):
    """Each error the hung- and killed-rank runs above have met in rank 0 (which one depends on the timing
    of gloo's threads) becomes the one-line explanation, not a raw backend trace."""
    err = RuntimeError(message)
    assert lost_peer(err)
    assert str(rank_lost_error(err, 0, 2, 0.5)).startswith(
        "rank 0 of 2: another rank of this run died or stopped responding (")


class PreemptedTrainer:
    """What the preemption guard uses of a fairchem trainer, fetching the batch of step 21."""

    def __init__(self) -> None:
        self.train_loader = [0, 1, 2]
        self.step = 21
        self.epoch = 7.0
        self.device = "cpu"
        self.logger = None


def submitit_handler(folder: Path) -> Callable:
    """The preemption handler a submitit job of ``PluginRunner`` installs (SLURM job 301, rank 0)."""
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.slurm.slurm import SlurmJobEnvironment

    from leignn_plugin.fairchem1.launch.runner import PluginRunner

    runner = PluginRunner()
    runner.config, runner.trainer = {"mode": "train"}, None
    delayed = DelayedSubmission(runner, runner.config)
    delayed.set_timeout(60, 3)
    return SignalHandler(SlurmJobEnvironment(), JobPaths(folder, job_id="301", task_id=0),
                         delayed).checkpoint_and_try_requeue


@pytest.fixture
def rank_zero_of_job_301(monkeypatch):
    """This process as rank 0 of SLURM job 301 (USR2 preempts); its USR2 and TERM handlers restored afterwards."""
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", SIGNAL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "301")
    monkeypatch.setenv("SLURM_PROCID", "0")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGUSR2, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("late_signal", ["USR2", "TERM"])
@pytest.mark.parametrize("launcher", ["submitit", "srun"])
def test_requeue_survives_a_late_or_repeated_signal(launcher, late_signal, rank_zero_of_job_301, tmp_path,
                                                    monkeypatch):
    """SLURM's USR2, or the SIGTERM of the requeue itself, reaches rank 0 and its ``scontrol requeue`` mid-request
    (CI lost a run once: scontrol died of USR2): the job is still saved and requeued once, and a USR2 after
    the guard has exited neither kills the rank nor saves and requeues again through submitit's handler."""
    calls = tmp_path / "scontrol.calls"
    bin_dir = late_signal_scontrol(tmp_path / "bin", late_signal, f'echo "$*" >> {shlex.quote(str(calls))}')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    if launcher == "submitit":
        signal.signal(signal.SIGUSR2, submitit_handler(tmp_path))
    trainer = PreemptedTrainer()
    saved: list[int] = []
    guard = PreemptionGuard(trainer, lambda: saved.append(trainer.step) or "checkpoint.pt", slurm_actions())

    with pytest.raises(SystemExit) as stopped, guard:
        signal.raise_signal(signal.SIGUSR2)  # the pre-timeout signal: acted on before the next batch
        for _ in trainer.train_loader:
            pytest.fail("a batch was fetched after the preemption signal")
    assert stopped.value.code == (-1 if launcher == "submitit" else PREEMPTED_EXIT_CODE)
    assert calls.read_text() == "requeue 301\n"
    assert saved == ([] if launcher == "submitit" else [20])  # submitit saves through PluginRunner.checkpoint
    if launcher == "submitit":
        assert (tmp_path / "301_submitted.pkl").is_file()  # the resubmission submitit requeues

    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    signal.raise_signal(signal.SIGUSR2)
    assert calls.read_text() == "requeue 301\n"
