"""Choose between a local run and a SLURM submission, as fairchem's ``main`` does."""

from __future__ import annotations

import argparse

from leignn_plugin.launch.local import run_local


def dispatch(args: argparse.Namespace, config: dict) -> None:
    """Run ``config`` here (``--num-gpus`` ranks) or submit it with submitit (``--submit``)."""
    if args.submit:
        from leignn_plugin.launch.slurm import submit

        submit(args, config)
    else:
        run_local(config, args.num_gpus)
