"""Training on a real two-node SLURM cluster (tests/slurm_cluster.py) through ``main.py --submit``.

One uninterrupted two-node CPU run is the reference: prediction from its checkpoint, and the runs that are
preempted (USR2 before the time limit) or requeued (SIGTERM) must end bit-for-bit where it ends, with
every step's learning rate logged once and equal to the reference's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from slurm_cluster import PARTITION, SlurmCluster, slurm_cluster  # noqa: F401  (session fixture)
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

pytestmark = pytest.mark.slurm

EPOCHS = 50
STEPS = EPOCHS * 4  # 16 training slabs, 2 per rank and step on 2 ranks
SUBMIT = ["--submit", "--num-nodes", "2", "--num-gpus", "1", "--cpu", "--slurm-partition", PARTITION,
          "--slurm-timeout", "1", "--slurm-mem", "1", "--seed", "3", "--print-every", "5"]
STEP_LINE = re.compile(r"step: ([0-9.e+]+)")


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


def submit(cluster: SlurmCluster, config: Path, run_dir: Path, timestamp_id: str, *extra: str) -> SlurmRun:
    """``main.py --mode train --submit`` from ``run_dir``; the submitted job."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = main_py(["--mode", "train", "--config-yml", str(config), *SUBMIT, "--run-dir", str(run_dir),
                    "--timestamp-id", timestamp_id, *extra], run_dir, timeout=180, env=cluster.env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"Submitted job (\d+)", done.stdout + done.stderr)
    assert found, (done.stdout + done.stderr)[-3000:]
    return SlurmRun(run_dir=run_dir, timestamp_id=timestamp_id, job_id=found.group(1))


def sbatch_cpu_template(cluster: SlurmCluster, config: Path, run_dir: Path, run_id: str) -> SlurmRun:
    """``sbatch slurm/train_cpu.sbatch CONFIG`` on two nodes with one rank each (options given on the command line)."""
    env = {**cluster.env, "LEIGNN_HOME": str(REPO), "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1", "RUN_ID": run_id}
    done = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=1G", "--time=30",
         f"--partition={PARTITION}", f"--chdir={run_dir}", f"--output={run_dir}/sbatch-%j.out",
         str(REPO / "slurm" / "train_cpu.sbatch"), str(config), "--run-dir", str(run_dir), "--seed", "3",
         "--print-every", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().split(";")[0]
    return SlurmRun(run_dir=run_dir, timestamp_id=run_id, job_id=job_id, output=run_dir / f"sbatch-{job_id}.out")


def wait_for_step(run: SlurmRun, cluster: SlurmCluster, step: int, timeout: float = 180) -> int:
    """Wait until rank 0 has logged ``step`` (or later); the last step logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.last_step() >= step:
            return run.last_step()
        assert cluster.job(run.job_id).get("JobState") in {"PENDING", "RUNNING"}, run.log(0)[-3000:]
        time.sleep(0.2)
    pytest.fail(f"job {run.job_id} did not reach step {step} in {timeout:.0f} s:\n{run.log(0)[-3000:]}")


@pytest.fixture(scope="module")
def reference_run(slurm_cluster, slurm_config, tmp_path_factory) -> SlurmRun:  # noqa: F811
    run = submit(slurm_cluster, slurm_config, tmp_path_factory.mktemp("reference"), "reference")
    info = slurm_cluster.wait(run.job_id, timeout=300)
    assert info["JobState"] == "COMPLETED", f"{info}\n{run.log(0)[-4000:]}\n{run.log(1)[-2000:]}"
    return run


def assert_lr_continuous(run: SlurmRun, reference: SlurmRun) -> None:
    """Every step 1..STEPS was logged, with the learning rate of the uninterrupted run."""
    got = scalars(run.run_dir, run.timestamp_id, "train/lr")
    want = scalars(reference.run_dir, reference.timestamp_id, "train/lr")
    assert sorted(want) == list(range(1, STEPS + 1))
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-6)


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
                   reference_run.run_dir, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    (predictions,) = (reference_run.run_dir / "results" / "predict").glob("*.npz")
    with np.load(predictions) as result:
        energy, forces = result["energy"].reshape(-1), result["forces"]
    assert energy.shape == (6,) and np.isfinite(energy).all() and np.ptp(energy) > 0
    assert np.isfinite(forces).all()


def test_preemption_signal_checkpoints_requeues_and_resumes(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                           tmp_path):
    """USR2 (SLURM's pre-timeout signal) mid-run: checkpoint at a step boundary, requeue, identical finish."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "preempted")
    wait_for_step(run, slurm_cluster, 20)
    slurm_cluster.run("scancel", "--signal=USR2", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=300)
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


@pytest.mark.slow  # 200 steps can finish before the signal lands on a loaded machine
def test_sbatch_cpu_template_preempted_and_resumed(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                   tmp_path):
    """slurm/train_cpu.sbatch (srun ranks, no submitit): USR2 checkpoints, ``scontrol requeue``, identical finish."""
    run = sbatch_cpu_template(slurm_cluster, slurm_config, tmp_path, "sbatch")
    wait_for_step(run, slurm_cluster, 20)
    slurm_cluster.run("scancel", "--signal=USR2", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=300)
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


@pytest.mark.slow
def test_requeue_by_slurm_checkpoints_and_resumes(reference_run, slurm_cluster, slurm_config,  # noqa: F811
                                                  tmp_path):
    """``scontrol requeue`` (SIGTERM to the ranks) mid-run: checkpoint on the way out, identical finish."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "requeued")
    wait_for_step(run, slurm_cluster, 20)
    slurm_cluster.run("scontrol", "requeue", run.job_id)
    info = slurm_cluster.wait(run.job_id, timeout=300)
    log = run.log(0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{log[-4000:]}"
    saved = re.search(r"terminated: saved the training state after step (\d+)", log)
    assert saved and 20 <= int(saved.group(1)) < STEPS, log[-4000:]
    assert_same_training_state(STEPS, checkpoint_of(run.run_dir, "requeued"),
                               checkpoint_of(reference_run.run_dir, "reference"))
    assert_lr_continuous(run, reference_run)


@pytest.mark.slow
def test_killed_rank_fails_the_job_with_a_clear_message(slurm_cluster, slurm_config, tmp_path):  # noqa: F811
    """SIGKILL to rank 1 mid-run: rank 0 stops with an explanation and the job fails instead of hanging."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "killed", "--optim.max_epochs=100000", "--timeout=1")
    wait_for_step(run, slurm_cluster, 10)
    pid = re.search(r"rank 1/2 on node2 \(pid (\d+)\)", run.log(1))
    assert pid, run.log(1)[-3000:]
    os.kill(int(pid.group(1)), signal.SIGKILL)
    info = slurm_cluster.wait(run.job_id, timeout=120)
    assert info["JobState"] == "FAILED", info
    assert "rank 0 of 2: another rank of this run died or stopped responding" in run.log(0)


@pytest.mark.slow
def test_hung_rank_times_out_and_fails_the_job(slurm_cluster, slurm_config, tmp_path):  # noqa: F811
    """SIGSTOP to rank 1: rank 0's collective times out (config ``timeout``: 0.25 min) and the job fails."""
    run = submit(slurm_cluster, slurm_config, tmp_path, "hung", "--optim.max_epochs=100000", "--timeout=0.25")
    wait_for_step(run, slurm_cluster, 10)
    pid = re.search(r"rank 1/2 on node2 \(pid (\d+)\)", run.log(1))
    assert pid, run.log(1)[-3000:]
    os.kill(int(pid.group(1)), signal.SIGSTOP)
    info = slurm_cluster.wait(run.job_id, timeout=180)
    assert info["JobState"] == "FAILED", info
    assert "rank 0 of 2: another rank of this run died or stopped responding" in run.log(0)
