"""``make demo``: build the embedded data, train LEIGNN with main.py, evaluate, relax, and report.

Every step is the command a user would type (``leignn-data demo``, ``main.py --mode train``,
``--mode validate``, ``--mode predict``, ``--mode run-relaxations``); this script only chains them
and collects the numbers and plots. Nothing is written through a symbolic link inside the output
folder: the folders it writes into are checked first, and its files are renamed into place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from leignn_plugin.outputs import inside_output
from leignn_plugin.workflows.demo_report import (
    SUMMARY_1X,
    SUMMARY_2X,
    comparison_line,
    demo_main,
    read_summary,
    stale_data,
    test_errors_text,
)
from leignn_plugin.workflows.evaluation import (
    curve_plot,
    parity_plot,
    relaxation_energies,
    score_predictions,
    tensorboard_scalars,
    training_curve,
    write_json,
)
from leignn_plugin.workflows.fairchem_runs import REPO_ROOT, fresh_folder, run_main

S2EF_CONFIG = REPO_ROOT / "configs/demo/leignn_s2ef.yml"
WRITTEN = ("runs/checkpoints", "runs/results", "runs/logs/tensorboard", "plots")
"""The folders under the output folder the demo writes into (main.py's run folders, the plots)."""
RELAX_CONFIG = REPO_ROOT / "configs/demo/leignn_relax.yml"


def data_overrides(data: Path) -> list[str]:
    """Point the demo configs at a demo dataset directory."""
    s2ef, is2re = data / "oc20_s2ef", data / "oc20_is2re"
    return [f"--dataset.train.src={s2ef / 'train'}", f"--dataset.val.src={s2ef / 'val'}",
            f"--dataset.test.src={s2ef / 'test'}", f"--dataset.relax.src={is2re / 'val'}"]


def build_data(data: Path, size: str, output_format: str = "lmdb") -> None:
    """``leignn-data demo`` unless the current demo dataset of ``size`` is already there; demo data of
    another size or an older data version (a manifest says which) are replaced."""
    why = stale_data(data, size)
    if why is None:
        print(f"using the demo data in {data}")
        return
    command = [sys.executable, "-m", "leignn_plugin.data", "demo", str(data), "--size", size,
               "--output-format", output_format]
    if (data / "manifest.json").is_file():
        print(f"rebuilding the demo data in {data}: {why}")
        command.append("--overwrite")
    subprocess.run(command, check=True)


def run_demo(out: Path, size: str = "default", epochs: int | None = None) -> dict:
    """The whole chain; returns the summary that is also written to ``out/summary.json``."""
    started = time.perf_counter()
    out = out.resolve()
    for folder in WRITTEN:
        inside_output(out, folder)
    data, runs = out / "data", out / "runs"
    build_data(data, size)
    overrides = data_overrides(data)
    if epochs is not None:
        overrides.append(f"--optim.max_epochs={epochs}")

    train = run_main("train", S2EF_CONFIG, runs, "demo-train", overrides, extra=["--print-every", "5"])
    checkpoint = train.checkpoint_dir / "best_checkpoint.pt"
    if not checkpoint.is_file():
        checkpoint = train.checkpoint_dir / "checkpoint.pt"
    curve = training_curve(train.log)

    validate = run_main("validate", S2EF_CONFIG, runs, "demo-validate", overrides, checkpoint=checkpoint)
    val_scalars = tensorboard_scalars(validate.tensorboard_dir)
    predict = run_main("predict", S2EF_CONFIG, runs, "demo-predict", overrides, checkpoint=checkpoint)
    predictions = predict.results_dir / "s2ef_predictions.npz"
    test_scores = score_predictions(predictions, data / "oc20_s2ef" / "test")

    # a folder of this run's own: fairchem skips every system whose trajectory file already exists,
    # so a second demo in the same place would relax nothing (and crash gathering no results)
    traj_dir = fresh_folder(runs, "relaxations")
    relax = run_main("run-relaxations", RELAX_CONFIG, runs, "demo-relax",
                     [*overrides, f"--task.relax_opt.traj_dir={traj_dir}"],
                     checkpoint=checkpoint)
    relax_scalars = tensorboard_scalars(relax.tensorboard_dir)
    energies = relaxation_energies(traj_dir)
    # structures the model already sees as relaxed (forces below fmax) keep their initial energy
    moved = {sid: pair for sid, pair in energies.items() if pair[0] != pair[1]}

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    test_split = data / "oc20_s2ef" / "test"
    title = f"LEIGNN, make demo (fairchem 1.10): test split, {test_scores['frames']} frames"
    summary = {
        "host": "fairchem 1.10",
        "data_version": json.loads((data / "manifest.json").read_text(encoding="utf-8")).get("data_version", 1),
        "checkpoint": str(checkpoint),
        "training_force_mae_first_last": [curve[0][1], curve[-1][1]] if curve else None,
        "validation": {k: v[-1][1] for k, v in val_scalars.items()},
        "test": test_scores,
        "relaxation_metrics": {k: v[-1][1] for k, v in relax_scalars.items()},
        "relaxations": len(energies),
        "relaxations_taking_steps": len(moved),
        "relaxations_lowering_energy": sum(final < initial for initial, final in moved.values()),
        "predictions": str(predictions),
        "relaxed_positions": str(relax.results_dir / "relaxed_positions.npz"),
        "tensorboard": str(runs / "logs" / "tensorboard"),
        "plots": [str(parity_plot(predictions, test_split, plots / "parity_test.png", title))],
    }
    if curve:
        summary["plots"].append(str(curve_plot(curve, plots / "training_force_mae.png")))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(summary, out / SUMMARY_1X)
    return summary


def report(summary: dict, out: Path) -> str:
    """The block the demo ends with: errors, where everything went, the 2.x demo's errors where it ran."""
    lines = ["", "LEIGNN demo finished"]
    first_last = summary["training_force_mae_first_last"]
    if first_last:
        lines.append(f"  training force MAE: {first_last[0]:.3f} -> {first_last[1]:.3f} eV/Å")
    lines.append(f"  test {test_errors_text(summary['test'])} ({summary['test']['frames']} frames)")
    lines.append(f"  relaxations: {summary['relaxations']}, of which {summary['relaxations_taking_steps']} took "
                 f"steps and {summary['relaxations_lowering_energy']} of those lowered the energy")
    lines.append(f"  checkpoint:  {summary['checkpoint']}")
    lines.append(f"  predictions: {summary['predictions']}")
    lines.append(f"  metrics:     {out / SUMMARY_1X}")
    lines.append(f"  tensorboard: {summary['tensorboard']}")
    lines.extend(f"  plot:        {plot}" for plot in summary["plots"])
    other = out / SUMMARY_2X
    line = comparison_line(summary, read_summary(other), "fairchem 2.x demo (direct forces)", other)
    if line:
        lines.append(line)
    lines.append(f"  took {summary['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("leignn-demo", __doc__, "override the config's max_epochs", run_demo, report, argv)


if __name__ == "__main__":
    sys.exit(main())
