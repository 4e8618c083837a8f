"""Forward+forces and training-step times of LEIGNN 512x4 on the benchmark batch: the minimum and
median of 12 (6) calls in one process, for comparing two versions of the code run alternately.

    .venv/bin/python benchmarks/ab_forward.py LABEL

(``leignn-bench models`` interleaves 3 repetitions of five models and releases memory to the
operating system before each, so on a shared machine its LEIGNN samples spread by up to 2x; this
times LEIGNN alone, many times.)
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from leignn_plugin.bench.baselines import MODEL_SPECS
from leignn_plugin.bench.batch import oc20_like_batch
from leignn_plugin.bench.measure import ModelRunner


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    runner = ModelRunner(MODEL_SPECS["leignn"].build(), oc20_like_batch(), torch.device("cpu"))
    out = {}
    for name, step, calls in (("forward", runner.forward_forces, 12), ("train", runner.train_step, 6)):
        step()  # warm-up
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out[name] = (min(times), statistics.median(times))
    label = sys.argv[1] if len(sys.argv) > 1 else "this checkout"
    print(label, " ".join(f"{k} min {v[0]:.3f} median {v[1]:.3f}" for k, v in out.items()), flush=True)


if __name__ == "__main__":
    main()
