"""Scaling of graph-parallel LEIGNN on fairchem 2.x: time per step and peak memory per rank against one
process, for periodic Cu supercells of 10k-100k atoms .

Every rank runs a direct-force LEIGNN step without autograd on the whole structure's batch: the neighbour
search (done by every rank on all atoms, as fairchem's graph parallelism does), its share of the edges and
atoms, the per-layer all-gathers and all-reduces (gloo), and the gathered forces. ``leignn-bench
graph-parallel`` in the fairchem 2.x environment runs it (the host registers :func:`run` with ``tools_host``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

from leignn_plugin.bench.md_scaling import copper_supercell
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.fairchem2.graph_parallel_run import GraphParallelCase, GraphParallelJob, run_graph_parallel

MODEL = dict(hidden_channels=64, num_layers=3, num_rbf=32, cutoff=4.0, max_neighbors=20, direct_forces=True,
             regress_forces=True)


def scaling_rows(sizes: list[int], world_sizes: list[int], steps: int, seed: int = 0) -> list[dict]:
    """One row per (structure size, ranks): median step time, each rank's peak memory and its rise."""
    torch.manual_seed(seed)
    core = LEIGNNPotential(**MODEL)
    torch.nn.init.xavier_uniform_(core.energy_head.mlp[-1].weight)
    state = core.state_dict()
    cores = os.cpu_count() or 1
    rows = []
    for size in sizes:
        atoms = copper_supercell(size, seed=seed)
        for world in world_sizes:
            job = GraphParallelJob([GraphParallelCase([atoms], MODEL, state, dtype=torch.float32)], steps=steps,
                                   threads=max(1, cores // world), grad=False)
            results = run_graph_parallel(job, world)
            rows.append({
                "atoms": len(atoms), "ranks": world, "threads_per_rank": job.threads,
                "step_s": max(r.step_s[0] for r in results),
                "peak_rss_mib": [round(r.peak_rss_mib, 1) for r in results],
                "rise_mib": [round(r.peak_rss_mib - r.base_rss_mib, 1) for r in results],
            })
            print(f"{len(atoms)} atoms, {world} rank(s): {rows[-1]['step_s']:.2f} s/step, "
                  f"peak rise per rank {max(rows[-1]['rise_mib']):.0f} MiB", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    """The table: per size, each rank count's step time and memory against one process's."""
    lines = ["| atoms | ranks | step (s) | speed-up | peak rise per rank (MiB) | of one process's |",
             "|---:|---:|---:|---:|---:|---:|"]
    single = {row["atoms"]: row for row in rows if row["ranks"] == 1}
    for row in rows:
        one = single.get(row["atoms"])
        speed = f"{one['step_s'] / row['step_s']:.2f}x" if one else "-"
        share = f"{max(row['rise_mib']) / max(one['rise_mib']):.2f}" if one and max(one["rise_mib"]) > 0 else "-"
        lines.append(f"| {row['atoms']} | {row['ranks']} | {row['step_s']:.2f} | {speed} | "
                     f"{max(row['rise_mib']):.0f} | {share} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> str:
    """``leignn-bench graph-parallel``: measure ``--sizes`` x ``--ranks``, write ``graph-parallel.json`` into
    ``--out`` and return the Markdown table."""
    sizes = [int(s) for s in args.sizes.split(",")]
    world_sizes = [int(r) for r in args.ranks.split(",")]
    if 1 not in world_sizes:
        world_sizes = [1, *world_sizes]  # the single-process reference of every ratio
    rows = scaling_rows(sizes, world_sizes, args.steps + 1, args.seed)
    payload = {"command": sys.argv, "model": MODEL, "dtype": "float32", "structure": "rattled fcc Cu supercell",
               "cpus": os.cpu_count(), "platform": platform.platform(), "rows": rows}
    (args.out / "graph-parallel.json").write_text(json.dumps(payload, indent=2) + "\n")
    model = ", ".join(f"{k}={v}" for k, v in MODEL.items())
    return "\n".join([
        "## Graph-parallel LEIGNN on fairchem 2.x (gloo ranks on CPU)",
        "",
        f"- command: `leignn-bench {' '.join(sys.argv[1:])}`; {os.cpu_count()} cores, torch {torch.__version__}",
        f"- model: {model}; float32, direct forces, no autograd; rattled fcc Cu supercells",
        "- step: every rank's whole step (neighbour search on all atoms, its share of edges and atoms, per-layer "
        "all-gathers and all-reduces, gathered forces); the slowest rank's median of "
        f"{args.steps} timed step(s); peak rise: resident memory above the built model's, the largest rank's",
        "",
        markdown(rows),
    ])
