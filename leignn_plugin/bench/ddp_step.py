"""One DistributedDataParallel training step of the installed host's LEIGNN on two ranks.

Two processes (NCCL on two GPUs; gloo on the CPU, which is how the suite runs this path) build the same
seeded float32 model, each takes one structure of a two-structure batch, and DDP averages their
gradients in the backward pass. Then each rank computes, without DDP, each structure's gradient alone and
their mean: the averaged gradient must equal it (float32 tolerance), and after one SGD step both ranks
must hold the same parameters.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from leignn_plugin.bench.amp_training import amp_model
from leignn_plugin.testing.structures import bulk_cell, slab_with_adsorbate, to_batch

DDP_CONFIG = "direct-gaussian-polynomial"
RTOL = 1e-5
"""float32: the gradient all-reduce sums in another order than the single-process mean."""
TIMEOUT_S = 300.0
"""A step that has not ended by then (a hung collective) fails instead of stopping the whole check."""


@dataclass
class DdpResult:
    """What the two-rank step found; ``status`` is ``ok``, ``failed`` or why it was skipped."""

    status: str
    backend: str = ""
    gradient_deviation: float | None = None
    gradient_scale: float | None = None
    parameter_deviation: float | None = None

    @property
    def ok(self) -> bool | None:
        """None when skipped."""
        return None if self.status.startswith("skipped") else self.status == "ok"

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loss(model, batch) -> torch.Tensor:
    out = model(batch.clone())
    return (out["energy"].float() ** 2).mean() + (out["forces"].float() ** 2).mean()


def _gradients(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])  # [P]


def _rank(rank: int, device_type: str, port: int, out: str) -> None:
    """One rank of the step (the entry point ``torch.multiprocessing.spawn`` calls)."""
    backend = "nccl" if device_type == "cuda" else "gloo"
    device = torch.device(f"cuda:{rank}") if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        structures = [bulk_cell(), slab_with_adsorbate()]
        model = amp_model(DDP_CONFIG).to(device).train()
        ddp = DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
        mine = to_batch([structures[rank]], torch.float32).to(device)
        _loss(ddp, mine).backward()
        averaged = _gradients(model).detach().clone()
        torch.optim.SGD(model.parameters(), lr=1e-2).step()
        params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # [P]
        gathered = [torch.empty_like(params) for _ in range(2)]
        dist.all_gather(gathered, params)
        parts = []  # on both ranks: a training forward pass joins the ranks' element records (core/elements.py)
        for structure in structures:
            alone = amp_model(DDP_CONFIG).to(device).train()
            _loss(alone, to_batch([structure], torch.float32).to(device)).backward()
            parts.append(_gradients(alone))
        if rank == 0:
            expected = (parts[0] + parts[1]) / 2
            scale = max(1.0, float(expected.abs().max()))
            result = DdpResult(status="ok", backend=backend,
                               gradient_deviation=float((averaged - expected).abs().max()), gradient_scale=scale,
                               parameter_deviation=float((gathered[0] - gathered[1]).abs().max()))
            if result.gradient_deviation > RTOL * scale or result.parameter_deviation > 0.0:
                result.status = "failed"
            Path(out).write_text(json.dumps(asdict(result)))
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    # gloo's process group can deadlock in its destructor when DDP's reducer releases it last (its worker
    # thread waits for the GIL the destructor holds): with every collective done, leave without destructors
    os._exit(0)


def run_ddp(device_type: str) -> DdpResult:
    """The two-rank step on ``device_type`` (``cuda`` needs two GPUs, else it is skipped; ``cpu`` runs gloo)."""
    if device_type == "cuda" and torch.cuda.device_count() < 2:
        return DdpResult(status=f"skipped: one GPU ({torch.cuda.device_count()} visible), a 2-rank NCCL step "
                         "needs two")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        context = mp.start_processes(_rank, args=(device_type, _free_port(), str(out)), nprocs=2, join=False,
                                     start_method="spawn")
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while not context.join(timeout=5):
                if time.monotonic() > deadline:
                    for process in context.processes:
                        process.kill()
                    return DdpResult(status=f"failed: the step did not end within {TIMEOUT_S:g} s")
        except mp.ProcessException as err:
            lines = [line for line in str(err).splitlines() if line.strip()]
            return DdpResult(status=f"failed: {lines[-1] if lines else type(err).__name__}")
        return DdpResult(**json.loads(out.read_text()))
