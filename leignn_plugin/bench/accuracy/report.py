"""The accuracy report: a Markdown table, a JSON file, learning curves and parity plots.

Every figure carries a footer naming the command, the date, the machine and the software versions
that made it, as the Markdown header does.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np

from leignn_plugin.bench.accuracy.metrics import mean_spread
from leignn_plugin.bench.accuracy.runner import ModelResult, Plan
from leignn_plugin.outputs import replace_file, write_text

# (key in SeedRun.test, column heading, scale, format)
METRICS = (
    ("energy_mae", "energy MAE (eV)", 1.0, ".3g"),
    ("forces_mae", "force MAE (eV/Å)", 1.0, ".3g"),
    ("forces_cosine", "force cos", 1.0, ".3f"),
    ("efwt", "EFwT (%)", 100.0, ".1f"),
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(argv: list[str], threads: int) -> dict[str, str | int]:
    """Command, date, machine and software versions of this run."""
    return {
        "command": "leignn-bench " + " ".join(argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cores": os.cpu_count() or 0,
        "cpu": _cpu_model(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "fairchem-core": _version("fairchem-core"),
        "leignn-plugin": _version("leignn-plugin"),
    }


def footer(prov: dict, width: int = 150) -> str:
    """What every figure carries at its foot: command, date, machine, versions (wrapped at ``width``)."""
    text = (f"{prov['command']}  |  {prov['date']}  |  {prov['host']}, {prov['cores']} cores ({prov['cpu']}), "
            f"{prov['threads']} threads  |  Python {prov['python']}, torch {prov['torch']}, "
            f"fairchem-core {prov['fairchem-core']}, leignn-plugin {prov['leignn-plugin']}")
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def format_pm(mean: float | None, spread: float | None, fmt: str) -> str:
    """``mean ± spread`` (or the mean alone, or ``-``)."""
    if mean is None:
        return "-"
    return f"{mean:{fmt}}" if spread is None else f"{mean:{fmt}} ± {spread:{fmt}}"


def _runs_metric(result: ModelResult, get) -> tuple[float | None, float | None]:
    return mean_spread([get(run) for run in result.runs])


def model_summary(result: ModelResult) -> dict[str, dict[str, float | None]]:
    """Mean and spread over seeds of every reported quantity."""
    getters = {key: (lambda run, key=key: run.test[key]) for key, *_ in METRICS}
    getters.update({
        "untrained_forces_mae": lambda run: run.untrained_test["forces_mae"],
        "untrained_energy_mae": lambda run: run.untrained_test["energy_mae"],
        "epoch_time_s": lambda run: run.epoch_time_s,
        "inference_ms_per_structure": lambda run: 1000 * run.inference_s_per_structure,
        "extensivity_max_relative_deviation": lambda run: run.extensivity["max_relative_deviation"],
        "extensivity_max_deviation_per_atom": lambda run: run.extensivity["max_deviation_per_atom"],
    })
    out = {}
    for key, get in getters.items():
        mean, spread = _runs_metric(result, get)
        out[key] = {"mean": mean, "spread": spread}
    out["params"] = {"mean": float(result.runs[0].params) if result.runs else None, "spread": None}
    return out


def results_table(results: list[ModelResult]) -> str:
    """One row per model: accuracy on the test split, cost, extensivity; skipped and failed models say why."""
    head = ["model", "params", *[m[1] for m in METRICS], "untrained force MAE (eV/Å)", "train (s/epoch)",
            "inference (ms/structure)", "extensivity (max rel. dev.)", "note"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        if not result.runs:
            rows.append(f"| {result.model.label} |" + " - |" * (len(head) - 2) + f" {result.status} |")
            continue
        s = model_summary(result)
        cells = [result.model.label, f"{result.runs[0].params:,}"]
        cells += [format_pm(*(None if v is None else v * scale for v in (s[key]["mean"], s[key]["spread"])), fmt)
                  for key, _, scale, fmt in METRICS]
        cells.append(format_pm(s["untrained_forces_mae"]["mean"], s["untrained_forces_mae"]["spread"], ".3g"))
        cells.append(format_pm(s["epoch_time_s"]["mean"], s["epoch_time_s"]["spread"], ".3g"))
        cells.append(format_pm(s["inference_ms_per_structure"]["mean"], s["inference_ms_per_structure"]["spread"],
                               ".3g"))
        worst = max(run.extensivity["max_relative_deviation"] for run in result.runs)
        cells.append(f"{worst:.1e}")
        note = result.model.note if result.status == "ok" else f"{result.model.note}; {result.status}"
        cells.append(note)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def extensivity_table(results: list[ModelResult]) -> str:
    """Per model and cell: the worst deviation from E(n) = n E(1) over n = 1..4 and over seeds."""
    rows = ["| model | read by | cell | max relative deviation | max deviation (eV/atom) |", "|---|---|---|---|---|"]
    for result in results:
        if not result.runs:
            continue
        cells: dict[str, list[dict]] = {}
        for run in result.runs:
            for cell in run.extensivity["cells"]:
                cells.setdefault(cell["cell"], []).append(cell)
        for label, checks in cells.items():
            rel = max(c["max_relative_deviation"] for c in checks)
            per_atom = max(c["max_deviation_per_atom"] for c in checks)
            rows.append(f"| {result.model.label} | {result.runs[0].extensivity_reader} | {label} | {rel:.1e} | "
                        f"{per_atom:.1e} |")
    return "\n".join(rows)


def markdown(plan: Plan, results: list[ModelResult], prov: dict, elapsed_s: float) -> str:
    """The whole report as Markdown."""
    r, z, sp = plan.recipe, plan.size, plan.splits
    seeds = ", ".join(str(s) for s in plan.seeds)
    lines = [
        f"## Accuracy at equal budget: {sp.description}",
        "",
        f"- command: `{prov['command']}` ({elapsed_s / 60:.1f} min)",
        f"- date: {prov['date']}; host: {prov['host']}, {prov['cores']} cores ({prov['cpu']}), {prov['threads']} "
        f"threads; Python {prov['python']}, torch {prov['torch']}, fairchem-core {prov['fairchem-core']}, "
        f"leignn-plugin {prov['leignn-plugin']}",
        f"- data: {sp.sizes['train']} / {sp.sizes['val']} / {sp.sizes['test']} frames (train / val / test): "
        f"`{sp.train}`, `{sp.val}`, `{sp.test}`",
        f"- budget, the same for every model: {r.epochs} epochs of batch {r.batch_size} "
        f"({sp.steps_per_epoch(r.batch_size)} steps each), AdamW (amsgrad) from lr {r.lr:g} down a cosine to "
        f"{r.lr / 100:g}, EMA {r.ema_decay:g}, gradient norm clipped at {r.clip_grad_norm:g}; loss L1 energy + "
        f"{r.force_coefficient:g} x L1 forces (free atoms); energies fitted per element, normaliser of zero mean; "
        "the best epoch by validation force MAE is tested",
        f"- size, where the model has the setting: width {z.width}, depth {z.depth}, {z.num_rbf} radial functions, "
        f"cutoff {z.cutoff:g} Å, at most {z.max_neighbors} neighbours",
        f"- seeds: {seeds} (values are mean ± sample standard deviation over seeds)" if len(plan.seeds) > 1
        else f"- seed: {seeds} (one seed: no spread)",
        f"- models projected to train longer than {plan.time_limit_min:g} min per seed are skipped (--time-limit)",
        "",
        results_table(results),
        "",
        "Untrained force MAE: the same model before training (built by fairchem's trainer from the same config "
        "and seed, hence the same initial weights). Train s/epoch: training steps only, from fairchem's logged "
        "step times (validation left out). Inference: fairchem's predict over the test split in batches of "
        f"{r.eval_batch_size}, graph construction included, divided by the number of structures. Extensivity: "
        "worst |E(n x 1 x 1) - n E(1)| / |n E(1)| over n = 2..4, the cells below and the seeds.",
        "",
    ]
    skipped = [res for res in results if res.status != "ok"]
    if skipped:
        lines += ["### Skipped or failed", ""]
        lines += [f"- {res.model.label}: {res.status}" for res in skipped]
        lines.append("")
    lines += [f"### Extensivity: E(n x 1 x 1 supercell) = n E(cell), n = 1..4 ({plan.cells_source})", "",
              extensivity_table(results), "",
              "Float32 rounding alone leaves deviations near 1e-7. A larger one on symmetric cells but not on the "
              "rattled cell comes from a neighbour cap that cuts a shell of equidistant neighbours differently in "
              "the larger cell: fairchem's graph breaks such ties arbitrarily by default "
              "(`enforce_max_neighbors_strictly`), LEIGNN keeps every tied neighbour.", ""]
    lines += ["### Reproduce one run", "",
              "From the repository root (the configs are in `configs/` beside this file: `base.yml` holds data, "
              "optimiser, schedule, outputs and losses; each model's file adds only its `model:` section):", ""]
    lines += [f"- `{run.command}`" for res in results for run in res.runs[:1]]
    lines += ["", "![learning curves](learning_curves.png)", "", "![parity](parity.png)", ""]
    return "\n".join(lines)


def to_json(plan: Plan, results: list[ModelResult], prov: dict, elapsed_s: float) -> dict:
    """Everything measured, per model and seed, with the settings and provenance."""
    sp = plan.splits
    return {
        "provenance": prov,
        "elapsed_s": elapsed_s,
        "data": {"description": sp.description, "train": str(sp.train), "val": str(sp.val), "test": str(sp.test),
                 "sizes": sp.sizes, "key_mapping": sp.key_mapping, "use_pbc": sp.use_pbc},
        "recipe": plan.recipe.__dict__,
        "size": plan.size.__dict__,
        "seeds": plan.seeds,
        "time_limit_min": plan.time_limit_min,
        "extensivity_cells": plan.cells_source,
        "models": [{
            "name": res.model.name, "label": res.model.label, "note": res.model.note, "status": res.status,
            "config": str(res.config), "model_section": res.section,
            "projected_min_per_seed": res.projected_min_per_seed,
            "summary": model_summary(res) if res.runs else None,
            "runs": [run.to_dict() for run in res.runs],
        } for res in results],
    }


def write_json(path: Path, payload: dict) -> Path:
    return write_text(path, json.dumps(payload, indent=2, allow_nan=True))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_curve(result: ModelResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, wall times and validation force MAE averaged over seeds (over the epochs all seeds have)."""
    length = min(len(run.val_curve) for run in result.runs)

    def take(key: str) -> np.ndarray:
        return np.array([[point[key] for point in run.val_curve[:length]] for run in result.runs]).mean(axis=0)

    return take("epoch"), take("wall_s"), take("forces_mae")


def curves_figure(results: list[ModelResult], path: Path, title: str, prov: dict) -> Path:
    """Validation force MAE against epoch and against wall time, one line per model (mean over seeds)."""
    plt = _pyplot()
    trained = [r for r in results if r.runs]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for result in trained:
        epochs, wall, mae = _mean_curve(result)
        style = dict(marker="o", ms=3, lw=2.2 if result.model.name == "leignn" else 1.4, label=result.model.label)
        axes[0].plot(epochs, mae, **style)
        axes[1].plot(wall, mae, **style)
    for ax, xlabel in ((axes[0], "epoch (0 = untrained)"), (axes[1], "wall time since training began (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation force MAE (eV/Å)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.01, footer(prov, 190), fontsize=6.5, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with replace_file(path, suffix=".png") as tmp:  # replaces a link at ``path``, never writes through it
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def parity_figure(results: list[ModelResult], path: Path, title: str, prov: dict) -> Path:
    """Predicted against reference test energies and force components, one row per model (first seed)."""
    plt = _pyplot()
    trained = [r for r in results if r.runs]
    fig, axes = plt.subplots(max(len(trained), 1), 2, figsize=(9, 2.9 * max(len(trained), 1) + 0.6), squeeze=False)
    for row, result in zip(axes, trained):
        pairs = result.runs[0].pairs
        for ax, x, y, label in ((row[0], pairs["ref_energy"], pairs["energy"], "energy (eV)"),
                                (row[1], pairs["ref_forces"].ravel(), pairs["forces"].ravel(), "force component (eV/Å)")):
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
            ax.scatter(x, y, s=5, alpha=0.5)
            ax.set_xlabel(f"reference {label}", fontsize=8)
            ax.set_ylabel(f"predicted {label}", fontsize=8)
            ax.set_title(f"{result.model.label} (seed {result.runs[0].seed}): MAE {np.abs(x - y).mean():.3g}",
                         fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    height = fig.get_figheight()
    fig.text(0.01, 0.05 / height, footer(prov, 170), fontsize=6, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - 0.1 / height))
    with replace_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
