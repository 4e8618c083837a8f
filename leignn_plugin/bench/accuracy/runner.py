"""The accuracy benchmark from data to results: configs, the fit check, training, scoring.

For every model: a short timed training step on one batch projects its training time per seed; a
model projected past the time limit is skipped with that reason. Each remaining model and seed is then
trained by ``main.py --mode train`` and scored by the evaluation process (the installed host's
``trainer_evaluation``, which only the fairchem 1.10 host has); a run that fails marks its model as
failed with the reason and the benchmark goes on with the next model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from leignn_plugin.bench.accuracy.configs import Recipe, Splits, repo_relative, write_configs
from leignn_plugin.bench.accuracy.extensivity import CellCheck, leignn_checks, summary
from leignn_plugin.bench.accuracy.metrics import score_file
from leignn_plugin.bench.accuracy.models import AccuracyModel, Size
from leignn_plugin.workflows.fairchem_runs import REPO_ROOT, run_main

LEIGNN_NAMES = ("leignn",)  # model sections read by the project's calculator for the extensivity check


@dataclass
class Plan:
    """What one benchmark run trains, on what, and where it writes."""

    models: list[AccuracyModel]
    seeds: list[int]
    size: Size
    recipe: Recipe
    splits: Splits
    out: Path
    runs: Path
    time_limit_min: float
    cells: list = field(default_factory=list)
    cells_source: str = ""


@dataclass
class SeedRun:
    """One model trained with one seed, and everything measured about it."""

    seed: int
    params: int
    test: dict[str, float]
    untrained_test: dict[str, float]
    untrained_val: dict[str, float]
    val_curve: list[dict[str, float]]
    epoch_time_s: float | None
    train_process_s: float
    inference_s_per_structure: float
    extensivity: dict
    extensivity_reader: str
    checkpoint: str
    predictions: str
    untrained_predictions: str
    command: str
    pairs: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "pairs"}


@dataclass
class ModelResult:
    """A model's status (``ok``, ``skipped: ...``, ``failed: ...``) and its runs."""

    model: AccuracyModel
    config: Path
    section: dict
    status: str = "ok"
    projected_min_per_seed: float | None = None
    runs: list[SeedRun] = field(default_factory=list)


def projected_minutes(section: dict, splits: Splits, recipe: Recipe, limit_min: float) -> float:
    """Training minutes per seed projected from a timed step (forward, backward, AdamW) on one batch.

    The first step (which includes one-off set-up) is used alone when it already projects past the
    limit; otherwise the faster of two steps.
    """
    import torch
    from fairchem.core.common.data_parallel import data_list_collater
    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import setup_imports

    from leignn_plugin.data.safe_records import open_lmdb_dataset
    from leignn_plugin.tools_host import installed

    installed()  # the host has registered leignn in fairchem's registry

    with warnings.catch_warnings():  # fairchem's model modules warn about torch.load on import
        warnings.simplefilter("ignore", FutureWarning)
        setup_imports()
    options = {"key_mapping": dict(splits.key_mapping)} if splits.key_mapping else {}
    dataset = open_lmdb_dataset(splits.train, "--train", **options)
    count = min(recipe.batch_size, len(dataset))
    batch = data_list_collater([dataset[i] for i in range(count)], otf_graph=True)
    del dataset
    kwargs = {k: v for k, v in section.items() if k != "name"}
    torch.manual_seed(0)
    model = registry.get_model_class(section["name"])(**kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, amsgrad=True)
    steps = recipe.epochs * splits.steps_per_epoch(recipe.batch_size)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        out = model(batch.clone())
        loss = out["energy"].float().abs().mean() + out["forces"].float().abs().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        if times[0] * steps / 60 > limit_min:
            break
    return min(times) * steps / 60


def learning_curve(tensorboard_dir: Path, steps_per_epoch: int) -> tuple[list[dict[str, float]], float | None]:
    """Validation metrics after each epoch with the wall time since training began, and the median
    training time per epoch (steps only: validation and checkpoints between epochs left out).

    Read from fairchem's tensorboard events: each training step is logged with its wall-clock time.
    The training time of an epoch is its mean step interval times the steps per epoch; training is
    taken to begin one median step before the first step was logged.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    steps = [(e.step, e.wall_time) for e in acc.Scalars("train/epoch")] if "train/epoch" in tags else []
    by_epoch: dict[int, list[float]] = {}
    for step, wall in steps:
        by_epoch.setdefault((step - 1) // steps_per_epoch, []).append(wall)
    intervals = [(w[-1] - w[0]) / (len(w) - 1) for w in by_epoch.values() if len(w) > 1]
    step_s = statistics.median(intervals) if intervals else None
    epoch_s = step_s * steps_per_epoch if step_s is not None else None
    start = steps[0][1] - (step_s or 0.0) if steps else 0.0
    curve = []
    if "val/forces_mae" in tags:
        energy = {e.step: e.value for e in acc.Scalars("val/energy_mae")} if "val/energy_mae" in tags else {}
        for event in acc.Scalars("val/forces_mae"):
            curve.append({"epoch": event.step / steps_per_epoch, "wall_s": event.wall_time - start,
                          "forces_mae": float(event.value), "energy_mae": float(energy.get(event.step, "nan"))})
    return curve, epoch_s


def _evaluate(plan: Plan, config: Path, seed: int, checkpoint: Path, identifier: str, cells_file: Path) -> dict:
    """Run the evaluation process (``python -m`` the host's ``trainer_evaluation``) and read its result."""
    from leignn_plugin.tools_host import installed

    out = plan.runs / "evaluations" / f"{identifier}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    module = installed().trainer_evaluation
    if module is None:
        raise RuntimeError("the installed fairchem host has no trainer evaluation: the accuracy benchmark runs "
                           "in the fairchem 1.10 environment")
    cmd = [sys.executable, "-m", module, "--config", str(config),
           "--seed", str(seed), "--test", str(plan.splits.test.resolve()), "--checkpoint", str(checkpoint),
           "--run-dir", str(plan.runs), "--identifier", identifier, "--cells", str(cells_file), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    (plan.runs / "logs").mkdir(parents=True, exist_ok=True)
    (plan.runs / "logs" / f"{identifier}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"evaluation failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


def _checks(supercells: list[dict]) -> list[CellCheck]:
    return [CellCheck(c["label"], c["natoms"], c["energies"]) for c in supercells]


def train_and_score(plan: Plan, result: ModelResult, seed: int, cells_file: Path,
                    log: Callable[[str], None]) -> SeedRun:
    """Train one model with one seed through ``main.py``, then score it (untrained and trained)."""
    name = result.model.name
    identifier = f"{name}-s{seed}"
    steps = plan.splits.steps_per_epoch(plan.recipe.batch_size)
    start = time.perf_counter()
    train = run_main("train", result.config.resolve(), plan.runs, identifier, [],
                     extra=["--seed", str(seed), "--print-every", str(steps)], echo=False)
    train_s = time.perf_counter() - start
    (plan.runs / "logs").mkdir(parents=True, exist_ok=True)
    (plan.runs / "logs" / f"{identifier}-train.log").write_text(train.log)
    checkpoint = train.checkpoint_dir / "best_checkpoint.pt"
    curve, epoch_s = learning_curve(train.tensorboard_dir, steps)
    log(f"  trained in {train_s:.0f} s (main.py, start-up included); scoring ...")

    evaluation = _evaluate(plan, result.config.resolve(), seed, checkpoint, f"{identifier}-eval", cells_file)
    test, pairs = score_file(Path(evaluation["predictions"]), plan.splits.test)
    untrained, _ = score_file(Path(evaluation["untrained_predictions"]), plan.splits.test)
    untrained_val = evaluation["untrained_val"]
    curve.insert(0, {"epoch": 0.0, "wall_s": 0.0, "forces_mae": untrained_val.get("forces_mae", float("nan")),
                     "energy_mae": untrained_val.get("energy_mae", float("nan"))})
    trainer_checks = summary(_checks(evaluation["supercells"]))
    if result.section["name"] in LEIGNN_NAMES:
        extensivity = summary(leignn_checks(checkpoint, plan.cells))
        extensivity["trainer_max_relative_deviation"] = trainer_checks["max_relative_deviation"]
        reader = "LEIGNNCalculator (leignn_plugin.md.calculator)"
    else:
        extensivity, reader = trainer_checks, "fairchem's trainer (predict)"
    rel = repo_relative(result.config, REPO_ROOT)
    return SeedRun(
        seed=seed, params=int(evaluation["params"]), test=test, untrained_test=untrained,
        untrained_val=untrained_val, val_curve=curve, epoch_time_s=epoch_s, train_process_s=train_s,
        inference_s_per_structure=float(evaluation["inference_s_per_structure"]), extensivity=extensivity,
        extensivity_reader=reader, checkpoint=str(checkpoint), predictions=evaluation["predictions"],
        untrained_predictions=evaluation["untrained_predictions"],
        command=f"python main.py --mode train --config-yml {rel} --cpu --seed {seed}", pairs=pairs,
    )


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def fit_check(plan: Plan, results: list[ModelResult], log: Callable[[str], None]) -> None:
    """Project every model's training time per seed; skip those past the time limit or out of memory."""
    for result in results:
        try:
            minutes = projected_minutes(result.section, plan.splits, plan.recipe, plan.time_limit_min)
        except (RuntimeError, MemoryError, ImportError) as err:  # out of memory; a missing optional package
            result.status = f"skipped: a training step failed in the fit check ({_one_line(err)[:200]})"
            log(f"{result.model.name}: {result.status}")
            continue
        result.projected_min_per_seed = minutes
        if minutes > plan.time_limit_min:
            result.status = (f"skipped: projected {minutes:.1f} min of training per seed, over the limit of "
                             f"{plan.time_limit_min:g} min (--time-limit)")
        log(f"{result.model.name}: projected {minutes:.1f} min of training per seed"
            + ("" if result.status == "ok" else " -> skipped (over --time-limit)"))


def run_plan(plan: Plan, log: Callable[[str], None] = print) -> list[ModelResult]:
    """Write the configs, check what fits, train and score every model and seed."""
    import ase.io

    configs = write_configs(plan.out / "configs", plan.models, plan.size, plan.splits, plan.recipe, REPO_ROOT)
    log(f"configs: {plan.out / 'configs'} (base.yml + one file per model)")
    plan.runs.mkdir(parents=True, exist_ok=True)
    cells_file = plan.runs / "extensivity_cells.extxyz"
    ase.io.write(cells_file, plan.cells)
    results = [ModelResult(m, configs[m.name], m.section(plan.size, plan.splits.use_pbc)) for m in plan.models]
    log(f"fit check: one timed training step per model (limit {plan.time_limit_min:g} min of training per seed)")
    fit_check(plan, results, log)
    todo = [(r, s) for r in results if r.status == "ok" for s in plan.seeds]
    projected = sum(r.projected_min_per_seed or 0.0 for r, _ in todo)
    log(f"{len(todo)} training runs, about {projected:.0f} min of training projected "
        "(plus start-up and scoring, about half a minute per run)")
    began = time.perf_counter()
    for k, (result, seed) in enumerate(todo, 1):
        if result.status != "ok":
            continue
        log(f"[{k}/{len(todo)}] {result.model.label}, seed {seed}: training {plan.recipe.epochs} epochs "
            f"({time.perf_counter() - began:.0f} s elapsed)")
        try:
            run = train_and_score(plan, result, seed, cells_file, log)
        except (RuntimeError, FileNotFoundError, OSError, ValueError) as err:
            result.status = f"failed: seed {seed}: {_one_line(err)[:300]}"
            log(f"  {result.status} (logs: {plan.runs / 'logs'})")
            continue
        result.runs.append(run)
        log(f"  test force MAE {run.untrained_test['forces_mae']:.4f} -> {run.test['forces_mae']:.4f} eV/Å, "
            f"energy MAE {run.untrained_test['energy_mae']:.4f} -> {run.test['energy_mae']:.4f} eV")
    return results
