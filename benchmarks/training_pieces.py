"""Training-step time of LEIGNN 512x4 on the benchmark batch with and without its two ways of keeping
per-edge tensors small in recorded passes: radial bands and the piece-size cap.

    .venv/bin/python benchmarks/training_pieces.py [--repeats 4]

Whole [E, 3F] tensors (70 MB here) are fresh mappings from the operating system on every call and
cost page faults; pieces of a few MB come from the allocator's reused heap.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import leignn_plugin.accel.message as message
from leignn_plugin.bench.baselines import MODEL_SPECS
from leignn_plugin.bench.batch import oc20_like_batch
from leignn_plugin.bench.measure import ModelRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MODEL_SPECS["leignn"].build()
    runner = ModelRunner(model, oc20_like_batch(), torch.device("cpu"))
    default_cap = message.RECORDED_PIECE_BYTES
    settings = [(bands, cap) for bands in (True, False) for cap in (default_cap, None)]
    times: dict[tuple[bool, int | None], list[float]] = {s: [] for s in settings}
    runner.train_step()  # warm-up
    for _ in range(args.repeats):  # interleaved, so that drifts of the machine hit every setting
        for bands, cap in settings:
            model.backbone.edge_layout.banded = bands
            message.RECORDED_PIECE_BYTES = cap if cap is not None else 1 << 62
            start = time.perf_counter()
            runner.train_step()
            times[(bands, cap)].append(time.perf_counter() - start)
    message.RECORDED_PIECE_BYTES = default_cap
    print("| radial bands | piece cap | train step (s, median) |\n|---|---|---|")
    for (bands, cap), samples in times.items():
        cap_text = f"{cap >> 20} MiB" if cap is not None else "none (whole tensors)"
        print(f"| {'on' if bands else 'off'} | {cap_text} | {statistics.median(samples):.3f} |")


if __name__ == "__main__":
    main()
