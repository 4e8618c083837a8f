"""``leignn-bench accuracy`` under fairchem 2.x: LEIGNN and fairchem 2.x's own current backbone, eSCN-MD
(the eSEN / UMA-small family, ``models/uma``), trained from scratch by ``fairchem -c`` on one recipe and
scored through fairchem's ``FAIRChemCalculator``.

Equal budget: both train from the same ``configs/fairchem2`` config (tasks, losses, data, batches of
``max_atoms``, AdamW, cosine schedule, EMA, epochs, seed) at the same width, depth, radial functions,
cutoff and neighbour cap; only ``model=`` differs (``model/leignn.yaml``; ``model/esen_sm.yaml``, lmax =
mmax = 2 as UMA-small, direct forces as LEIGNN's OC20 setting). The normaliser is the training split's
(``leignn-data inspect``). Each model is scored on the test split (energy and force MAE, also over the
free atoms); its training time, parameters and validation loss per epoch are recorded. LEIGNN is
then trained once more per seed for as many epochs as fit in eSCN-MD's measured training time (equal
time: the budget a user pays), and both comparisons are reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from leignn_plugin.bench.accuracy.options import parse_seeds
from leignn_plugin.data.inspect import inspect_dataset
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem2.evaluate import Errors, evaluate
from leignn_plugin.outputs import replace_file, write_text

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "fairchem2" / "demo.yaml"
MODELS = {"leignn": "LEIGNN", "esen_sm": "eSCN-MD (eSEN / UMA-small family, lmax 2)"}
"""The ``model=`` options trained, with their labels."""
EQUAL_TIME = "leignn-equal-time"
"""LEIGNN trained for eSCN-MD's training time."""
LABELS = {**MODELS, EQUAL_TIME: "LEIGNN, eSCN-MD's training time"}
DEFAULT_OUT = Path("benchmarks/results/fairchem2/accuracy")
QUICK_OUT = Path("demo_out/accuracy-fairchem2-quick")


@dataclass(frozen=True)
class Size:
    """The shared size: width, depth, radial functions (the config's cutoff and neighbour cap)."""

    width: int
    depth: int
    num_rbf: int = 32


@dataclass
class Trained:
    """One model trained with one seed and scored on the test split."""

    model: str
    seed: int
    epochs: int
    params: int
    train_s: float
    val_losses: list[float]
    test: dict[str, float]
    checkpoint: str
    command: str


def size_overrides(model: str, size: Size) -> list[str]:
    """The overrides giving ``model`` the shared size (eSCN-MD: sphere, hidden and edge channels)."""
    shared = [f"backbone.hidden_channels={size.width}", f"backbone.num_layers={size.depth}",
              f"backbone.num_rbf={size.num_rbf}"]
    if model == "esen_sm":
        shared += [f"model.backbone.{key}={size.width}" for key in ("sphere_channels", "hidden_channels",
                                                                    "edge_channels")]
        shared += [f"model.backbone.num_layers={size.depth}", f"model.backbone.num_distance_basis={size.num_rbf}"]
    return shared


def normaliser_overrides(train: Path) -> list[str]:
    """``energy_mean``, ``energy_rmsd`` and ``forces_rmsd`` of the training split."""
    stats = inspect_dataset(train)
    if stats.energy is None or stats.forces is None:
        raise UsageError(f"{train}: the training split needs energies and forces")
    return [f"energy_mean={stats.energy.mean!r}", f"energy_rmsd={max(stats.energy.std, 1e-6)!r}",
            f"forces_rmsd={max(stats.forces.rms, 1e-6)!r}"]


def train_one(model: str, seed: int, splits: dict[str, Path], size: Size, epochs: int, runs: Path,
              config: Path, threads: int) -> Trained:
    """Train ``model`` with ``seed`` by ``leignn-fairchem2 train -c`` (which hands the config to fairchem's
    ``fairchem -c``) and score its inference checkpoint on the test split."""
    from leignn_plugin.fairchem2.checkpoint import load_predict_unit

    run_dir = runs / f"{model}_seed{seed}"
    architecture = "leignn" if model == EQUAL_TIME else model
    command = [sys.executable, "-m", "leignn_plugin.fairchem2.cli", "train", "-c", str(config), f"model={architecture}",
               f"train_src={splits['train']}", f"val_src={splits['val']}", f"epochs={epochs}", f"++job.seed={seed}",
               f"job.run_dir={run_dir}", "job.device_type=CPU", *size_overrides(architecture, size),
               *normaliser_overrides(splits["train"])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    train_s = time.perf_counter() - start
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise UsageError(f"training {model} (seed {seed}) failed: {tail}")
    checkpoint = Path(done.stdout.strip().splitlines()[-1].removeprefix("inference checkpoint: "))
    baseline = architecture != "leignn"
    unit = load_predict_unit(checkpoint, baseline=baseline)
    params = sum(p.numel() for p in unit.model.parameters())
    errors: Errors = evaluate(checkpoint, config_dataset(config), [splits["test"]], progress=False,
                              baseline=baseline)
    losses = [float(m) for m in re.findall(r"val/loss: ([0-9.eE+-]+)", done.stdout + done.stderr)]
    shown = " ".join(command[1:]).replace(str(REPO) + "/", "")
    return Trained(model, seed, epochs, params, train_s, losses, errors.as_dict(), str(checkpoint), shown)


def config_dataset(config: Path) -> str:
    """The ``dataset_name`` of a configs/fairchem2 config (the task name its checkpoint predicts under)."""
    import yaml

    return str(yaml.safe_load(config.read_text()).get("dataset_name", "demo"))


def demo_splits(data: Path, small: bool) -> dict[str, Path]:
    """The demo S2EF splits under ``data`` (ASE-LMDB), built by ``leignn-data demo`` when missing."""
    root = data / "oc20_s2ef"
    if not root.is_dir():
        command = [sys.executable, "-m", "leignn_plugin.data.cli", "demo", str(data), "--output-format", "aselmdb",
                   "--quiet", *(["--size", "small"] if small else [])]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise UsageError(f"building the demo data in {data} failed: {done.stderr.strip()[-300:]}")
    return {split: root / split for split in ("train", "val", "test")}


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4g}" if len(values) == 1 else f"{mean:.4g} ± {statistics.stdev(values):.2g}"


def report(results: list[Trained], size: Size, epochs: int, command: str) -> str:
    """The Markdown table of every model (mean ± standard deviation over seeds) and the LEIGNN / eSCN-MD ratios."""
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("fairchem-core", "torch"))
    lines = [
        "# Accuracy at equal budget under fairchem 2.x: LEIGNN against eSCN-MD (eSEN / UMA-small family)",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; host: {platform.node()}; {versions}",
        f"- recipe: configs/fairchem2/demo.yaml, {epochs} epochs, width {size.width}, depth {size.depth}, "
        f"{size.num_rbf} radial functions, cutoff and neighbour cap of the config; test-split errors through "
        "FAIRChemCalculator",
        "",
        "| model | seeds | epochs | parameters | energy MAE (eV) | force MAE (eV/Å) | force MAE, free atoms (eV/Å) | "
        "training time (s) | validation loss by epoch (seed 0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, list[Trained]] = {}
    for item in results:
        by_model.setdefault(item.model, []).append(item)
    for model, runs in by_model.items():
        curve = ", ".join(f"{v:.3g}" for v in runs[0].val_losses)
        lines.append(
            f"| {LABELS[model]} | {len(runs)} | {', '.join(sorted({str(r.epochs) for r in runs}))} | "
            f"{runs[0].params:,} | {_spread([r.test['energy_mae'] for r in runs])} | "
            f"{_spread([r.test['forces_mae'] for r in runs])} | "
            f"{_spread([r.test['forces_mae_free_atoms'] for r in runs])} | "
            f"{_spread([r.train_s for r in runs])} | {curve} |")
    for name, heading in (("leignn", "equal epochs"), (EQUAL_TIME, "equal training time")):
        if {name, "esen_sm"} <= by_model.keys():
            ours, theirs = by_model[name], by_model["esen_sm"]

            def ratio(key, ours=ours, theirs=theirs) -> str:
                return f"{statistics.fmean(key(r) for r in ours) / statistics.fmean(key(r) for r in theirs):.2f}x"

            lines += ["", f"LEIGNN / eSCN-MD, {heading}: energy MAE " + ratio(lambda r: r.test["energy_mae"])
                      + ", force MAE " + ratio(lambda r: r.test["forces_mae"])
                      + ", training time " + ratio(lambda r: r.train_s)
                      + ", parameters " + ratio(lambda r: r.params)]
    return "\n".join(lines) + "\n"


def default_out(quick: bool) -> Path:
    """Where the benchmark writes when ``--out`` is not given."""
    return QUICK_OUT if quick else DEFAULT_OUT


def _models(args: argparse.Namespace) -> list[str]:
    return args.models.split(",") if getattr(args, "models", None) else list(MODELS)


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before anything is written, what the 2.x benchmark cannot do."""
    unknown = [m for m in _models(args) if m not in MODELS]
    if unknown:
        raise UsageError(f"--models: {', '.join(unknown)} not trained under fairchem 2.x (choose from "
                         f"{', '.join(MODELS)})")
    own = [getattr(args, split, None) for split in ("train", "val", "test")]
    if any(own) and not all(own):
        raise UsageError("--train, --val and --test go together (folders of .aselmdb files)")
    if getattr(args, "demo_set", "slabs") != "slabs":
        raise UsageError("under fairchem 2.x the accuracy benchmark trains on the demo slabs (S2EF) or on "
                         "--train/--val/--test")
    if args.seeds is not None:
        parse_seeds(args.seeds)
    for option in ("epochs", "width", "depth"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise UsageError(f"--{option} must be at least 1, got {value}")


def plot_curves(results: list[Trained], path: Path) -> None:
    """Validation loss against training time, one line per model and seed: what each model buys per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"leignn": "tab:blue", "esen_sm": "tab:red", EQUAL_TIME: "tab:cyan"}
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    shown: set[str] = set()
    for item in results:
        if not item.val_losses:
            continue
        times = [item.train_s * (i + 1) / len(item.val_losses) for i in range(len(item.val_losses))]
        label = None if item.model in shown else LABELS[item.model]
        shown.add(item.model)
        axis.plot(times, item.val_losses, "o-", color=colours[item.model], label=label, alpha=0.8)
    axis.set_xlabel("training time (s, process wall time spread over its epochs)")
    axis.set_ylabel("validation loss (fairchem's, per epoch)")
    axis.set_title("LEIGNN and eSCN-MD trained by fairchem -c on one recipe")
    axis.legend()
    figure.tight_layout()
    with replace_file(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)


def run(args: argparse.Namespace) -> str:
    """``leignn-bench accuracy`` on the fairchem 2.x host: trains and scores every model, writes
    accuracy.json and learning_curves.png in ``args.out``; returns the Markdown report."""
    check_options(args)
    quick = bool(args.quick)
    size = Size(width=args.width or (16 if quick else 64), depth=args.depth or (2 if quick else 3))
    epochs = args.epochs or (2 if quick else 5)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else ([0] if quick else [0, 1, 2])
    models = _models(args)
    own = [getattr(args, split, None) for split in ("train", "val", "test")]
    if all(own):
        splits = dict(zip(("train", "val", "test"), own))
    else:
        splits = demo_splits(args.data or Path("demo_out/data_aselmdb-small" if quick else "demo_out/data_aselmdb"),
                             quick)
    splits = {k: v.resolve() for k, v in splits.items()}
    runs = (args.runs or (QUICK_OUT / "runs" if quick else Path("demo_out/accuracy-fairchem2-runs"))).resolve()
    threads = getattr(args, "threads", None) or 2
    results = []
    for model in models:
        for seed in seeds:
            print(f"training {model}, seed {seed} ({epochs} epochs, width {size.width}, depth {size.depth})",
                  flush=True)
            results.append(train_one(model, seed, splits, size, epochs, runs, CONFIG, threads))
    if {"leignn", "esen_sm"} <= set(models):
        times = {m: statistics.fmean(r.train_s for r in results if r.model == m) for m in ("leignn", "esen_sm")}
        longer = max(epochs, round(epochs * times["esen_sm"] / times["leignn"]))
        for seed in seeds:
            print(f"training leignn for eSCN-MD's training time, seed {seed} ({longer} epochs)", flush=True)
            results.append(train_one(EQUAL_TIME, seed, splits, size, longer, runs, CONFIG, threads))
    command = "leignn-bench accuracy " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [])
    write_text(args.out / "accuracy.json", json.dumps({"size": asdict(size), "epochs": epochs,
                                                        "runs": [asdict(r) for r in results]}, indent=2) + "\n")
    plot_curves(results, args.out / "learning_curves.png")
    return report(results, size, epochs, command.strip())
