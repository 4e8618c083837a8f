"""Eager against compiled LEIGNN inference on one batch: speed-up, compile time and parity."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from leignn_plugin.accel import compile_for_inference
from leignn_plugin.bench.measure import measure_call


@dataclass
class CompiledResult:
    """Median forward+forces seconds of both paths, first-call (compile) time and output deviation."""

    eager_s: float
    compiled_s: float
    speedup: float
    compile_s: float
    max_rel_deviation: dict[str, float]
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


def _predict(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: v.detach() for k, v in model(batch).items()}


def run_compiled_speed(model: nn.Module, batch, repeats: int, device: torch.device) -> CompiledResult:
    """Compile ``model``, check its outputs against eager mode, then time both, interleaved."""
    model = model.to(device).eval()
    batch = batch.clone().to(device)
    start = time.perf_counter()
    compiled = compile_for_inference(model)
    out_compiled = _predict(compiled, batch)
    compile_s = time.perf_counter() - start
    out_eager = _predict(model, batch)
    deviation = {
        key: float((out_compiled[key] - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
        for key, ref in out_eager.items()
    }
    eager, fast = [], []
    for _ in tqdm(range(repeats), desc="eager / compiled", leave=False):
        eager.append(measure_call(lambda: _predict(model, batch), device).wall_s)
        fast.append(measure_call(lambda: _predict(compiled, batch), device).wall_s)
    eager_s, compiled_s = statistics.median(eager), statistics.median(fast)
    return CompiledResult(eager_s=eager_s, compiled_s=compiled_s, speedup=eager_s / compiled_s,
                          compile_s=compile_s, max_rel_deviation=deviation, repeats=repeats)
