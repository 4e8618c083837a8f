"""A real two-node SLURM cluster on this machine, for the tests of both hosts: munged, slurmctld and two
slurmd on loopback.

Debian's ``slurm-wlm`` and ``munge`` packages provide the daemons (``.ci/run`` installs them). Everything
lives in a private directory: the munge key and socket, ``slurm.conf`` (``SLURM_CONF`` points at it for
the session), state, spool and logs. Both nodes are this host (``NodeAddr=127.0.0.1``), each slurmd on
its own port. Teardown cancels leftover jobs, shuts the daemons down and stops munged.

A suite takes the cluster as the session fixture :func:`slurm_cluster` (node names ``node1``, ``node2``),
or wraps :func:`running_cluster` in its own fixture when its jobs need other node names.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "scontrol", "sbatch", "squeue", "scancel")
NODES = ("node1", "node2")
PARTITION = "debug"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED"}


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _slurm_conf(root: Path, nodes: tuple[str, ...], ports: list[int], first_job_id: int) -> str:
    host = socket.gethostname().split(".")[0]
    cpus = max(1, min(2, os.cpu_count() or 1))
    node_lines = "\n".join(
        f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} RealMemory=4000 "
        "State=UNKNOWN" for name, port in zip(nodes, ports[1:]))
    return f"""\
ClusterName=leignntest
FirstJobId={first_job_id}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=1
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# between SIGTERM and SIGKILL a terminated rank finishes its step and saves, even on a loaded machine
KillWait=10
MinJobAge=3600
InactiveLimit=0
MailProg=/bin/true
PlugStackConfig=/dev/null
{node_lines}
PartitionName={PARTITION} Nodes={",".join(nodes)} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """Handle on the running cluster: its config, environment and job queries."""

    root: Path
    conf: Path
    nodes: tuple[str, ...] = NODES
    partition: str = PARTITION
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` fields (JobState, Restarts, ExitCode, ...) of ``job_id``."""
        shown = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
        fields = {}
        for item in shown.split():
            key, _, value = item.partition("=")
            fields.setdefault(key, value)
        return fields

    def wait(self, job_id: str, timeout: float) -> dict[str, str]:
        """Poll until ``job_id`` reaches a final state; fields of the job, or a failure after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in FINISHED:
                return info
            time.sleep(0.5)
        self.run("scancel", job_id, check=False)
        pytest.fail(f"SLURM job {job_id} did not finish within {timeout:.0f} s: {self.job(job_id)}")

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of every daemon log (for failure messages)."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            parts.append(f"== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def is_stopped(pid: int) -> bool:
    """True while ``pid`` is stopped (SIGSTOP); False once it runs or has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] == "T"


def is_pending(pid: int, signum: signal.Signals) -> bool:
    """True while ``signum`` sent to the process ``pid`` waits to be handled (``ShdPnd`` of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    pending = re.search(r"^ShdPnd:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return pending is not None and bool(int(pending.group(1), 16) >> (int(signum) - 1) & 1)


def signal_held(cluster: SlurmCluster, pids: list[int], signum: signal.Signals, *command: str) -> None:
    """Run the SLURM ``command`` that sends ``signum`` to a job while its ranks ``pids`` are held (SIGSTOP)
    until it has reached each (pending, or SLURM continued the rank to deliver it): however slowly SLURM
    delivers it, it lands where the run was held, never after the run has ended."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: all(is_stopped(pid) for pid in pids), "the ranks to stop")
        cluster.run(*command)
        wait_until(lambda: all(is_pending(pid, signum) or not is_stopped(pid) for pid in pids),
                   f"{signum.name} to reach the ranks")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def _start(root: Path, nodes: tuple[str, ...]) -> SlurmCluster:
    for sub in ("munge", "state", "log", *(f"spool/{n}" for n in nodes)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    # Job ids (and so the CPU ranks' rendezvous ports) differ between clusters of concurrent test sessions.
    conf.write_text(_slurm_conf(root, nodes, _free_ports(1 + len(nodes)),
                                 first_job_id=random.randrange(100, 19000, 100)))
    cluster = SlurmCluster(root=root, conf=conf, nodes=nodes, env={**os.environ, "SLURM_CONF": str(conf)})
    munge = root / "munge"
    subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={munge}/munge.socket",
                    f"--pid-file={munge}/munged.pid", f"--log-file={root}/log/munged.log",
                    f"--seed-file={munge}/munged.seed"], check=True, capture_output=True, timeout=30)
    subprocess.run(["slurmctld", "-f", str(conf)], env=cluster.env, check=True, capture_output=True, timeout=30)
    for node in nodes:
        subprocess.run(["slurmd", "-N", node, "-f", str(conf)], env=cluster.env, check=True, capture_output=True,
                       timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = cluster.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split()
        if states.count("idle") == len(nodes):
            return cluster
        time.sleep(0.5)
    raise RuntimeError(f"SLURM nodes did not become idle: {states}")


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop(cluster: SlurmCluster) -> None:
    root = cluster.root
    # read first: a daemon that is shutting down removes its pid file before it has exited
    pids = [_pid(root / f"slurmd-{n}.pid") for n in cluster.nodes] + [_pid(root / "slurmctld.pid")]
    jobs = cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
    if jobs:
        # a job left by a failed test: let its steps end while slurmctld and munged still answer them
        cluster.run("scancel", *jobs, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.split():
            time.sleep(0.5)
    cluster.run("scontrol", "shutdown", check=False)
    deadline = time.monotonic() + 15
    for pid in filter(None, pids):
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    munged = _pid(root / "munge" / "munged.pid")
    if munged is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(munged, signal.SIGTERM)


def running_cluster(tmp_path_factory, nodes: tuple[str, ...] = NODES) -> Iterator[SlurmCluster]:
    """Start a two-node cluster named ``nodes``, point ``SLURM_CONF`` at it, yield it, then stop it; skips
    when slurm-wlm/munge are missing or will not start. A session fixture of a suite wraps it."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"SLURM tests need Debian's slurm-wlm and munge (missing: {', '.join(missing)}; "
                    "install with `apt-get install slurm-wlm munge`)")
    root = tmp_path_factory.mktemp("slurm")
    try:
        cluster = _start(root, nodes)
    except (OSError, subprocess.SubprocessError, RuntimeError) as err:
        stub = SlurmCluster(root=root, conf=root / "slurm.conf", nodes=nodes,
                            env={**os.environ, "SLURM_CONF": str(root / "slurm.conf")})
        _stop(stub)
        pytest.skip(f"could not start the local SLURM cluster ({err}):\n{stub.log_tail(10)}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        _stop(cluster)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A running two-node SLURM cluster with nodes ``node1`` and ``node2``."""
    yield from running_cluster(tmp_path_factory)
