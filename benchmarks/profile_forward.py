"""Where a forward pass spends its time: torch.profiler's operator table for LEIGNN or PaiNN.

    .venv/bin/python benchmarks/profile_forward.py [leignn|painn-512x4] [--train | --compiled]

``--compiled`` profiles LEIGNN's compiled inference path (``leignn_plugin/accel/compiled.py``) instead of eager mode.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from leignn_plugin.accel import compile_for_inference
from leignn_plugin.bench.baselines import MODEL_SPECS
from leignn_plugin.bench.batch import oc20_like_batch
from leignn_plugin.bench.measure import ModelRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="leignn", choices=sorted(MODEL_SPECS))
    parser.add_argument("--train", action="store_true", help="profile a training step instead")
    parser.add_argument("--compiled", action="store_true", help="profile the compiled inference path")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    if args.compiled and (args.train or args.model != "leignn"):
        parser.error("--compiled profiles LEIGNN inference only")
    torch.manual_seed(0)
    model = MODEL_SPECS[args.model].build()
    if args.compiled:
        model = compile_for_inference(model)
    runner = ModelRunner(model, oc20_like_batch(), torch.device("cpu"))
    step = runner.train_step if args.train else runner.forward_forces
    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                             row_limit=args.rows))


if __name__ == "__main__":
    main()
