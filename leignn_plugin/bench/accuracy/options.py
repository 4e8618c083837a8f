"""The command line of ``leignn-bench accuracy``: its options, their checks, and the run that writes the report.

    leignn-bench accuracy [--quick] [--models leignn,vanilla,...] [--seeds 0,1,2] [--epochs 5]
                          [--demo-set slabs|molecules] [--data DIR] [--train DIR --val DIR --test DIR]
                          [--out DIR] [--runs DIR] [--time-limit MIN]

Default: the demo S2EF slabs (EMT labels), width 64, depth 3, 5 epochs, seeds 0, 1 and 2, every
model that fits 15 minutes of training per seed. ``--quick``: the small demo data, width 16, depth 2,
2 epochs, one seed, 1 minute per model and seed, one thread, output in demo_out/accuracy-quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from leignn_plugin.bench.accuracy.configs import AccuracyError, Recipe, Splits, probe_splits
from leignn_plugin.bench.accuracy.models import DEFAULT_SIZE, MODELS, QUICK_SIZE, Size, resolve

DEFAULT_OUT = Path("benchmarks/results/accuracy")
# Tiny models gain nothing from a second thread, and two OpenMP threads sharing busy cores with other
# processes made training steps up to 20 times slower (2026-12-02): --quick runs on one unless told.
QUICK_THREADS = 1
QUICK_OUT = Path("demo_out/accuracy-quick")
DEMO_SETS = {
    "slabs": ("oc20_s2ef", "demo S2EF slabs: adsorbates (H, C, N, O, OH, CO) on fcc(111)/(100) metal slabs, "
                           "frames of BFGS relaxations, EMT energies and forces"),
    "molecules": ("molecules", "demo molecules: ethanol, acetaldehyde, benzene, methane, water from Langevin MD "
                               "at 300-800 K, GFN2-xTB energies and forces"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only ``accuracy`` reads (it also reads --models, --out, --threads and --device)."""
    group = parser.add_argument_group("accuracy (trains every model through main.py; see benchmarks/README.md)")
    group.add_argument("--quick", action="store_true",
                       help="small demo data, width 16, depth 2, 2 epochs, one seed, one thread unless "
                            "--threads (a few minutes)")
    group.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; quick: 0)")
    group.add_argument("--epochs", type=int, default=None, help="epochs for every model (default 5; quick: 2)")
    group.add_argument("--width", type=int, default=None, help="channels of every model (default 64; quick: 16)")
    group.add_argument("--depth", type=int, default=None, help="interaction layers (default 3; quick: 2)")
    group.add_argument("--batch-size", type=int, default=16, help="training batch size (default 16)")
    group.add_argument("--demo-set", choices=tuple(DEMO_SETS), default="slabs",
                       help="which demo dataset (default slabs; molecules: the GFN2-xTB molecules)")
    group.add_argument("--data", type=Path, default=None,
                       help="demo data folder, built with leignn-data demo when missing "
                            "(default demo_out/data; quick: demo_out/data-small)")
    group.add_argument("--train", type=Path, default=None, help="your own training LMDB (with --val and --test)")
    group.add_argument("--val", type=Path, default=None, help="your own validation LMDB")
    group.add_argument("--test", type=Path, default=None, help="your own test LMDB")
    group.add_argument("--runs", type=Path, default=None,
                       help="where main.py writes checkpoints and logs (default demo_out/accuracy-runs; "
                            "quick: demo_out/accuracy-quick/runs)")
    group.add_argument("--time-limit", type=float, default=None,
                       help="skip a model projected to train longer than this many minutes per seed "
                            "(default 15; quick: 1)")


def default_out(args: argparse.Namespace) -> Path:
    """Where ``accuracy`` writes when --out is not given: the repository's results, or quick's own folder."""
    return QUICK_OUT if args.quick else DEFAULT_OUT


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; anything but non-negative integers is one clear error."""
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AccuracyError(f"--seeds: expected comma-separated integers, got '{text}'") from None
    if not seeds or min(seeds) < 0:
        raise AccuracyError(f"--seeds: expected non-negative integers, got '{text}'")
    return list(dict.fromkeys(seeds))


def _positive(value: int | float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise AccuracyError(f"{option} must be positive, got {value:g}")


def check_options(args: argparse.Namespace) -> None:
    """Every option error as one line, before anything is built or trained."""
    if args.device != "cpu":
        raise AccuracyError(f"--device {args.device}: accuracy trains with main.py --cpu; only --device cpu works")
    own = {"--train": args.train, "--val": args.val, "--test": args.test}
    given = [k for k, v in own.items() if v is not None]
    if given and len(given) < 3:
        missing = [k for k in own if k not in given]
        raise AccuracyError(f"{', '.join(given)} needs {' and '.join(missing)} as well (your own train, "
                            "val and test LMDBs go together)")
    if given and args.data is not None:
        raise AccuracyError("--data (the demo data) and --train/--val/--test (your own) exclude each other")
    for option, value in (("--epochs", args.epochs), ("--width", args.width), ("--depth", args.depth),
                          ("--batch-size", args.batch_size), ("--time-limit", args.time_limit)):
        _positive(value, option)
    if args.width is not None and args.width % 2:
        raise AccuracyError(f"--width must be even (LEIGNN splits its channels in halves), got {args.width}")
    if args.seeds is not None:
        parse_seeds(args.seeds)
    if args.models is not None:
        resolve([n.strip() for n in args.models.split(",") if n.strip()])


def demo_splits(data: Path, demo_set: str, size: str) -> tuple[Splits, list[str]]:
    """The demo data's splits (built with ``leignn-data demo`` when missing) and its slab metals."""
    from leignn_plugin.workflows.demo import build_data

    if data.exists() and not (data / "manifest.json").is_file():
        raise AccuracyError(f"--data: {data} exists but holds no demo data (no manifest.json); give a new "
                            "folder (it is built with leignn-data demo) or your own --train/--val/--test")
    build_data(data, size)
    manifest = json.loads((data / "manifest.json").read_text())
    sub, description = DEMO_SETS[demo_set]
    root = data / sub
    splits = probe_splits(root / "train", root / "val", root / "test",
                          f"{description} ({manifest.get('size', size)} demo set, seed {manifest.get('seed', 0)})")
    metals = manifest.get("datasets", {}).get("oc20_s2ef", {}).get("metals") or ["Cu", "Pt"]
    return splits, metals


def build_plan(args: argparse.Namespace):
    """The plan the options describe: models, seeds, size, budget, data, cells, folders."""
    from leignn_plugin.bench.accuracy.extensivity import demo_bulk_cells, frames_as_cells
    from leignn_plugin.bench.accuracy.runner import Plan

    quick = args.quick
    base = QUICK_SIZE if quick else DEFAULT_SIZE
    size = Size(width=args.width or base.width, depth=args.depth or base.depth, num_rbf=base.num_rbf,
                cutoff=base.cutoff, max_neighbors=base.max_neighbors)
    recipe = Recipe(epochs=args.epochs or (2 if quick else 5), batch_size=args.batch_size)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else ([0] if quick else [0, 1, 2])
    names = list(MODELS) if args.models is None else [n.strip() for n in args.models.split(",") if n.strip()]
    if args.train is not None:
        splits = probe_splits(args.train, args.val, args.test, f"your data ({args.train})")
        cells, cells_source = frames_as_cells(args.test), "the first test structures"
    else:
        data = args.data or Path("demo_out/data-small" if quick else "demo_out/data")
        splits, metals = demo_splits(data, args.demo_set, "small" if quick else "default")
        if args.demo_set == "slabs":
            cells, cells_source = demo_bulk_cells(metals), "bulk fcc cells of the demo metals"
        else:
            cells, cells_source = frames_as_cells(splits.test), "the first test molecules, as n distant copies"
    runs = args.runs or (QUICK_OUT / "runs" if quick else Path("demo_out/accuracy-runs"))
    return Plan(models=resolve(names), seeds=seeds, size=size, recipe=recipe, splits=splits, out=args.out,
                runs=runs.resolve(), time_limit_min=args.time_limit or (1.0 if quick else 15.0), cells=cells,
                cells_source=cells_source)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark the options describe; write JSON and figures; return the Markdown report."""
    import torch

    from leignn_plugin.bench.accuracy import report
    from leignn_plugin.bench.accuracy.runner import run_plan

    check_options(args)
    if args.threads is None and args.quick:
        args.threads = QUICK_THREADS
        torch.set_num_threads(QUICK_THREADS)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the main.py and evaluation processes
    began = time.perf_counter()
    plan = build_plan(args)
    print(f"accuracy: {len(plan.models)} models x {len(plan.seeds)} seed(s), {plan.recipe.epochs} epochs, width "
          f"{plan.size.width}, depth {plan.size.depth}; data: {plan.splits.description}", flush=True)
    results = run_plan(plan, log=lambda line: print(line, flush=True))
    if not any(r.runs for r in results):
        raise AccuracyError("no model was trained: " + "; ".join(f"{r.model.name}: {r.status}" for r in results))
    elapsed = time.perf_counter() - began
    argv = getattr(args, "argv", None) or sys.argv[1:]
    prov = report.provenance(list(argv), torch.get_num_threads())
    title = (f"{plan.splits.description.split(':')[0]}: width {plan.size.width}, depth {plan.size.depth}, "
             f"{plan.recipe.epochs} epochs, seeds {','.join(map(str, plan.seeds))}")
    report.write_json(args.out / "accuracy.json", report.to_json(plan, results, prov, elapsed))
    report.curves_figure(results, args.out / "learning_curves.png", title, prov)
    report.parity_figure(results, args.out / "parity.png", f"Test parity, {title}", prov)
    return report.markdown(plan, results, prov, elapsed)
