"""LEIGNN against fairchem's baselines on one fixed batch, repetitions interleaved across models.

Every repetition times each model once (forward+forces, then a training step) before the next
repetition starts, so that load from other processes on a shared machine spreads over all models
alike; medians are reported. The first call of each model is a warm-up that also counts FLOPs.
A model that runs out of the memory budget is skipped with a message instead of stopping the run.
"""

from __future__ import annotations

import gc
import resource
import statistics
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from leignn_plugin.bench.baselines import REFERENCE, REFERENCE_FAIRCHEM2, ModelSpec
from leignn_plugin.bench.measure import (
    ModelRunner,
    count_flops,
    count_parameters,
    measure_call,
    release_freed_memory,
)

METRICS = ("params", "flops_forward", "forward_s", "train_s", "train_peak_mib")


@dataclass
class ModelResult:
    """What was measured for one model; ``status`` is ``ok`` or why it was skipped."""

    name: str
    label: str
    note: str
    status: str = "ok"
    params: int | None = None
    flops_forward: int | None = None
    flops_train: int | None = None
    forward_s: float | None = None
    forward_cpu_s: float | None = None
    train_s: float | None = None
    train_cpu_s: float | None = None
    forward_peak_mib: float | None = None
    train_peak_mib: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def ratios(self, reference: ModelResult) -> dict[str, float | None]:
        """Each metric divided by the reference model's."""
        out: dict[str, float | None] = {}
        for key in METRICS:
            mine, ref = getattr(self, key), getattr(reference, key)
            out[key] = mine / ref if mine is not None and ref else None
        return out

    def to_dict(self, reference: ModelResult | None) -> dict:
        data = asdict(self)
        data["ratio_to_reference"] = self.ratios(reference) if reference is not None else {}
        return data


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or "alloc" in text or "out of memory" in text


def default_budget_gib() -> float:
    """Memory a benchmark may take on a shared machine: 60% of what is available now, at least 1 GiB."""
    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    return max(1.0, 0.6 * kib / 2**20)


@contextmanager
def memory_cap(budget_gib: float | None):
    """Within the block, cap this process's address space at its current size plus ``budget_gib``.

    An allocation past the cap raises (and the model is skipped) instead of the kernel's
    out-of-memory killer ending the whole run, or other processes on the machine. The cap is
    lifted afterwards: memory a finished model leaves mapped must not starve the next one.
    """
    if budget_gib is None:
        yield
        return
    with open("/proc/self/status") as status:
        vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    old = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(vm_kib * 1024 + budget_gib * 2**30)
    if old[1] != resource.RLIM_INFINITY:
        limit = min(limit, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


class _Live:
    """A model under measurement and its result."""

    def __init__(self, spec: ModelSpec, runner: ModelRunner | None, result: ModelResult) -> None:
        self.spec, self.runner, self.result = spec, runner, result


def _guarded(live: _Live, what: str, fn: Callable[[], None]) -> bool:
    """Run ``fn``; on running out of memory mark the model skipped and free it."""
    try:
        fn()
        return True
    except (RuntimeError, MemoryError) as err:
        if not _out_of_memory(err):
            raise
        live.result.status = f"skipped: ran out of memory during {what}"
        live.runner = None
        del err
        release_freed_memory()
        return False


def run_comparison(
    specs: list[ModelSpec],
    batch,
    repeats: int,
    device: torch.device,
    seed: int = 0,
    train: bool = True,
    log: Callable[[str], None] = print,
    memory_budget_gib: float | None = None,
) -> list[ModelResult]:
    """Measure every model on ``batch``; returns results in the order of ``specs``.

    Construction and warm-up of each model run under ``memory_budget_gib`` (see ``memory_cap``).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    live: list[_Live] = []
    for spec in tqdm(specs, desc="build + warm-up (FLOPs)", leave=False):
        result = ModelResult(name=spec.name, label=spec.label, note=spec.note)
        entry = _Live(spec, None, result)
        live.append(entry)

        def build(entry: _Live = entry, spec: ModelSpec = spec) -> None:
            torch.manual_seed(seed)
            model = spec.build()
            entry.result.params = count_parameters(model)
            entry.runner = ModelRunner(model, batch, device, seed)

        with memory_cap(memory_budget_gib):
            built = _guarded(entry, "construction", build)
        if not built:
            log(f"{spec.name}: {result.status}")
            continue

        def warm(entry: _Live = entry) -> None:
            entry.result.flops_forward = count_flops(entry.runner.forward_forces)
            if train:
                entry.result.flops_train = count_flops(entry.runner.train_step)

        with memory_cap(memory_budget_gib):
            warmed = _guarded(entry, "the warm-up", warm)
        if not warmed:
            log(f"{spec.name}: {result.status}")

    samples = {e.spec.name: {"forward": [], "train": []} for e in live}
    for _ in tqdm(range(repeats), desc="repetitions", leave=False):
        for entry in live:
            if entry.runner is None:
                continue
            runner, store = entry.runner, samples[entry.spec.name]
            if not _guarded(entry, "forward+forces",
                            lambda r=runner, s=store: s["forward"].append(measure_call(r.forward_forces, device))):
                log(f"{entry.spec.name}: {entry.result.status}")
                continue
            if train and not _guarded(entry, "a training step",
                                      lambda r=runner, s=store: s["train"].append(measure_call(r.train_step, device))):
                log(f"{entry.spec.name}: {entry.result.status}")

    for entry in live:
        res, store = entry.result, samples[entry.spec.name]
        if res.status != "ok":
            continue
        fwd, trn = store["forward"], store["train"]
        res.forward_s = statistics.median(t.wall_s for t in fwd)
        res.forward_cpu_s = statistics.median(t.cpu_s for t in fwd)
        res.forward_peak_mib = statistics.median(t.peak_mib for t in fwd)
        res.samples = {"forward_s": [t.wall_s for t in fwd]}
        if trn:
            res.train_s = statistics.median(t.wall_s for t in trn)
            res.train_cpu_s = statistics.median(t.cpu_s for t in trn)
            res.train_peak_mib = statistics.median(t.peak_mib for t in trn)
            res.samples["train_s"] = [t.wall_s for t in trn]
        entry.runner = None
    gc.collect()
    return [e.result for e in live]


def reference_of(results: list[ModelResult]) -> ModelResult | None:
    """The reference's result (PaiNN 512x4 under fairchem 1.10, eSEN-sm under 2.x), when it was measured."""
    return next((r for r in results if r.name in (REFERENCE, REFERENCE_FAIRCHEM2) and r.status == "ok"), None)
