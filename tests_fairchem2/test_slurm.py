"""Training through fairchem 2.x's own SLURM launcher (``scheduler=slurm``: submitit, ``SlurmSPMDProgram``)
on a real two-node cluster (leignn_plugin/testing/slurm_cluster.py, the cluster the 1.10 suite uses).

Two nodes with one CPU rank each (gloo) train the demo config on 16 equal slabs (13 atoms, 2 a rank and
step, 8 steps): the final weights equal a single-process run on batches of 4 slabs in the same order,
and a run preempted by SLURM's pre-timeout signal (USR2) is requeued, resumes from its last periodic
checkpoint and ends with exactly the uninterrupted run's weights.

fairchem's ranks meet over TCP at the job's first node name, port 13356 (fixed in
fairchem.core.common.distutils): the cluster's first node is named after this host, which resolves, and
test sessions on one machine take turns for that port (:func:`rendezvous_port`). Waits poll job states
and files; each limit (``*_TIMEOUT``) is several times what the wait takes on two loaded cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ase.db
import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from conftest import REPO, run

from leignn_plugin.fairchem2.checkpoint import read_inference_checkpoint
from leignn_plugin.testing.slurm_cluster import SlurmCluster, running_cluster, signal_held

CONFIG = "configs/fairchem2/demo.yaml"
STEPS = 8  # 2 epochs of 4 steps: 16 slabs, 2 per rank and step on 2 ranks
# the test's data and a small model; the train loader keeps its batch order (the dataset is still permuted
# once by the sampler's seed) so that a single process can be given the same global batches
SIZE = ["epochs=2", "checkpoint_every=2", "max_atoms=26", "backbone.hidden_channels=16", "backbone.num_layers=2",
        "backbone.num_rbf=8", "loader.train.batch_sampler_fn.shuffle=false"]
RENDEZVOUS_PORT = 13356  # fairchem.core.common.distutils.DISTRIBUTED_PORT
# Limits of the waits, each several times what it takes on two cores shared with two CPU-bound processes.
SUBMIT_TIMEOUT = 180  # fairchem -c submits (imports fairchem, composes the config)
JOB_TIMEOUT = 400  # a job ends (after a requeue, both attempts)
CHECKPOINT_TIMEOUT = 240  # a job starts and writes its first periodic checkpoints
PORT_TIMEOUT = 900  # another test session's jobs release the rendezvous port
# float32 training (the 2.x recipe's dtype: fairchem's datasets give float32 positions to a float32
# HydraModel): two ranks sum each step's loss and gradient in another order than one process, which
# after 8 AdamW steps at lr 2e-3 leaves weights ~2e-7 apart; the bound is 50 times that and 100 times
# below what other batches of the same data change (~7e-3)
RANKS_VS_SINGLE_ATOL = 1e-5


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """The two-node cluster, its first node named after this host (fairchem connects to that name)."""
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
    except OSError:
        pytest.skip(f"this host's name {host!r} does not resolve; fairchem's ranks meet at the first node's name")
    yield from running_cluster(tmp_path_factory, (host, f"{host}-2"))


@contextlib.contextmanager
def rendezvous_port(timeout: float = PORT_TIMEOUT) -> Iterator[None]:
    """Hold this machine's lock on fairchem's fixed rendezvous port while a job runs: two test sessions
    running SLURM jobs at once would both bind it."""
    path = Path(tempfile.gettempdir()) / f"leignn-fairchem-port-{RENDEZVOUS_PORT}.lock"
    with path.open("a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {RENDEZVOUS_PORT} stayed taken by another test session for {timeout:.0f} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_slabs(path: Path, count: int, seed: int) -> Path:
    """``count`` rattled Cu(111) slabs with an O adatom (13 atoms, bottom layer fixed), EMT-labelled, as ASE-LMDB."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    with ase.db.connect(str(path / "data.aselmdb")) as db:
        for _ in range(count):
            slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
            add_adsorbate(slab, "O", 1.6, "fcc")
            slab.set_constraint(FixAtoms(mask=slab.get_tags() == 3))
            slab.rattle(stdev=0.08, seed=int(rng.integers(1 << 30)))
            slab.calc = EMT()
            energy, forces = slab.get_potential_energy(), slab.get_forces(apply_constraint=False)
            slab.calc = SinglePointCalculator(slab, energy=energy, forces=forces)
            db.write(slab, data={"charge": 0, "spin": 0})
    return path


@pytest.fixture(scope="module")
def slabs(tmp_path_factory) -> list[str]:
    """The overrides pointing the demo config at 16 training and 4 validation slabs."""
    root = tmp_path_factory.mktemp("slabs")
    return [f"train_src={write_slabs(root / 'train', 16, 0)}", f"val_src={write_slabs(root / 'val', 4, 1)}"]


def job_env(cluster: SlurmCluster) -> dict[str, str]:
    """The cluster's environment (the jobs inherit it), one thread a rank: two ranks share two cores."""
    return {**cluster.env, "OMP_NUM_THREADS": "1"}


@dataclass
class SlurmRun:
    """A run submitted by ``fairchem -c ... scheduler=slurm``: its folder and SLURM job."""

    folder: Path
    job_id: str

    def log(self, rank: int) -> str:
        """What rank ``rank`` wrote to stderr (fairchem's log), every attempt."""
        path = self.folder / "logs" / f"{self.job_id}_{rank}_log.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def final_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return final_weights(self.folder)


def final_weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Weights and EMA weights of a run's final inference checkpoint (read by the project's checked loader)."""
    saved = read_inference_checkpoint(folder / "checkpoints" / "final" / "inference_ckpt.pt")
    return {"model": saved.model_state_dict, "ema": saved.ema_state_dict}


FAIRCHEM = ["fairchem", "-c"]
PROJECT_CLI = ["leignn-fairchem2", "train", "-c"]  # checks the config, then hands it to fairchem -c


def submit(cluster: SlurmCluster, data: list[str], run_dir: Path, name: str, command: list[str] = FAIRCHEM) -> SlurmRun:
    """The README's ``fairchem -c configs/fairchem2/demo.yaml scheduler=slurm`` (or the same through
    ``leignn-fairchem2 train -c``) on the test's data and size."""
    done = run([*command, CONFIG, "scheduler=slurm", *data, *SIZE, f"job.run_dir={run_dir}",
                f"++job.timestamp_id={name}"], timeout=SUBMIT_TIMEOUT, env=job_env(cluster))
    assert done.returncode == 0, done.stderr[-3000:]
    if command == FAIRCHEM:
        found = re.search(r"slurm id: (\d+)", done.stderr)
    else:
        found = re.search(rf"^submitted SLURM job (\d+) \(2 nodes x 1 ranks\): logs in {run_dir / name / 'logs'}, "
                          rf"checkpoints in {run_dir / name / 'checkpoints'}$", done.stdout, re.MULTILINE)
    assert found, done.stdout[-2000:] + done.stderr[-3000:]
    return SlurmRun(run_dir / name, found.group(1))


def rank_pids(run: SlurmRun) -> dict[int, int]:
    """Process id of each rank of the job's current attempt (the python processes srun started), by rank."""
    pids = {}
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except (OSError, ValueError):
            continue
        if (b"submitit.core._submit" in args and Path(args[0].decode()).name != "srun"
                and env.get(b"SLURM_JOB_ID") == run.job_id.encode() and b"SLURM_PROCID" in env):
            pids[int(env[b"SLURM_PROCID"])] = int(proc.name)
    return pids


def wait_for(condition: Callable[[], bool], what: str, cluster: SlurmCluster, run: SlurmRun, timeout: float) -> None:
    """Poll ``condition`` while the job runs; fail with the job's state and log if it ends first or times out."""
    deadline = time.monotonic() + timeout
    while not condition():
        info = cluster.job(run.job_id)
        if info.get("JobState") not in {"PENDING", "RUNNING", "CONFIGURING"} or time.monotonic() > deadline:
            pytest.fail(f"waiting for {what} in job {run.job_id}: {info}\n{run.log(0)[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def two_node_run(slurm_cluster, slabs, tmp_path_factory) -> SlurmRun:
    """The uninterrupted two-node run, the reference of both tests."""
    with rendezvous_port():
        submitted = submit(slurm_cluster, slabs, tmp_path_factory.mktemp("runs"), "two_nodes")
        info = slurm_cluster.wait(submitted.job_id, timeout=JOB_TIMEOUT)
    assert info["JobState"] == "COMPLETED", f"{info}\n{submitted.log(0)[-4000:]}\n{submitted.log(1)[-2000:]}"
    return submitted


@pytest.mark.slurm
def test_two_nodes_train_as_one_process_with_the_same_global_batch(two_node_run, slurm_cluster, slabs, tmp_path):
    """Each node runs one gloo rank of a world of 2 and both train all 8 steps; the result is a single
    process's on batches of 4 slabs (``max_atoms`` doubled), the two ranks' batches one after the other."""
    info = slurm_cluster.job(two_node_run.job_id)
    assert info["NumNodes"] == "2" and info["Restarts"] == "0", info
    for rank in (0, 1):
        log = two_node_run.log(rank)
        assert f"world_size=2&rank={rank}" in log, log[-3000:]
        assert f"Training Completed {STEPS} steps" in log, log[-3000:]

    single_dir = tmp_path / "single"
    done = run(["fairchem", "-c", CONFIG, *slabs, *SIZE, "loader.train.batch_sampler_fn.max_atoms=52",
                f"job.run_dir={single_dir}", "++job.timestamp_id=single"], timeout=JOB_TIMEOUT,
               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Training Completed {STEPS} steps" in done.stderr
    single = final_weights(single_dir / "single")
    two_nodes = two_node_run.final_weights()
    for kind in ("model", "ema"):
        assert single[kind].keys() == two_nodes[kind].keys()
        for name, value in single[kind].items():
            torch.testing.assert_close(two_nodes[kind][name], value, rtol=0, atol=RANKS_VS_SINGLE_ATOL,
                                       msg=f"{kind} {name}")


@pytest.mark.slurm
def test_preemption_signal_requeues_and_resumes_to_the_same_weights(two_node_run, slurm_cluster, slabs,
                                                                    tmp_path):
    """USR2 (what SLURM sends before the time limit) once a periodic checkpoint exists: rank 0 points
    ``preemption_state`` at it and requeues the job, the second attempt resumes there, and the run ends
    with the uninterrupted run's weights, bit for bit. Submitted by ``leignn-fairchem2 train``, which
    names the job."""
    with rendezvous_port():
        preempted = submit(slurm_cluster, slabs, tmp_path, "preempted", PROJECT_CLI)
        wait_for(lambda: len(rank_pids(preempted)) == 2, "both ranks", slurm_cluster, preempted, CHECKPOINT_TIMEOUT)
        pids = rank_pids(preempted)
        # held as soon as the first checkpoint after step 0 is complete: 6 of the 8 steps are still to run
        checkpoint = preempted.folder / "checkpoints" / "step_2" / ".metadata"
        wait_for(checkpoint.exists, "the step-2 checkpoint", slurm_cluster, preempted, CHECKPOINT_TIMEOUT)
        signal_held(slurm_cluster, [pids[0], pids[1]], signal.SIGUSR2, "scancel", "--signal=USR2",
                    preempted.job_id)
        info = slurm_cluster.wait(preempted.job_id, timeout=JOB_TIMEOUT)
    log = preempted.log(0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{log[-4000:]}"
    assert "Caught signal SIGUSR2" in log and f"Requeued job {preempted.job_id}" in log, log[-4000:]
    state = preempted.folder / "checkpoints" / "preemption_state"
    resumed = re.search(r"it will be using the state found at (\S+)/step_(\d+),", log)
    assert resumed and 2 <= int(resumed.group(2)) < STEPS, log[-4000:]
    assert f"Done loading checkpoint from {state}" in log
    step = int(resumed.group(2))
    assert f"on_train_start: setting sampler state to {step // 4}, {step % 4}" in log  # epoch, step in it
    assert log.count(f"Training Completed {STEPS} steps") == 1
    assert f"Training Completed {STEPS} steps" in preempted.log(1)

    got, want = preempted.final_weights(), two_node_run.final_weights()
    for kind in ("model", "ema"):
        assert got[kind].keys() == want[kind].keys()
        for name, value in want[kind].items():
            assert torch.equal(got[kind][name], value), f"{kind} {name}"


# the README's GPU line: the command above with these overrides
GPU = ["job.device_type=CUDA", "job.scheduler.ranks_per_node=8", "job.scheduler.slurm.cpus_per_task=8",
       "job.scheduler.slurm.mem_gb=480", "job.scheduler.slurm.timeout_hr=72", "job.scheduler.slurm.partition=gpu",
       "job.scheduler.slurm.account=myproject", "job.scheduler.slurm.qos=normal"]


def test_gpu_overrides_make_the_sbatch_script_of_a_gpu_cluster(tmp_path, monkeypatch):
    """The GPU variant, up to sbatch (this machine has no GPU cluster): fairchem's launcher turns the
    overrides into an nccl world of 16 ranks and submitit's script asks for 2 nodes x 8 GPUs, one task
    per GPU, with the partition, account, qos, time limit and memory given."""
    import submitit
    from fairchem.core._cli import get_hydra_config_from_yaml
    from fairchem.core.launchers import slurm_launch

    scripts = []

    class WritingExecutor(submitit.AutoExecutor):
        """submitit's SLURM executor that writes its sbatch script instead of submitting it."""

        def __init__(self, folder: str, **options) -> None:
            super().__init__(folder, cluster="slurm", **options)

        def submit(self, function, *args):
            scripts.append(self._executor._make_submission_file_text("COMMAND", "0"))
            return submitit.DebugJob(tmp_path, "1")

    config = get_hydra_config_from_yaml(str(REPO / CONFIG), ["scheduler=slurm", *GPU, f"job.run_dir={tmp_path}"])
    assert slurm_launch.map_job_config_to_dist_config(config.job)["distributed_backend"] == "nccl"
    assert slurm_launch.map_job_config_to_dist_config(config.job)["world_size"] == 16
    monkeypatch.setattr(slurm_launch, "AutoExecutor", WritingExecutor)
    slurm_launch.slurm_launch(config, str(tmp_path / "logs"))
    (script,) = scripts
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=8", "--mem=480GB",
                 "--time=4320", "--partition=gpu", "--account=myproject", "--qos=normal", "--signal=USR2@90"):
        assert f"#SBATCH {line}\n" in script, script
