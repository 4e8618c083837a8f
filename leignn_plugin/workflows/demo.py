"""``make demo``: build the embedded data, train LEIGNN with main.py, evaluate, relax, and report.

Every step is the command a user would type (``leignn-data demo``, ``main.py --mode train``,
``--mode validate``, ``--mode predict``, ``--mode run-relaxations``); this script only chains them
and collects the numbers and plots.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
RELAX_CONFIG = REPO_ROOT / "configs/demo/leignn_relax.yml"


def data_overrides(data: Path) -> list[str]:
    """Point the demo configs at a demo dataset directory."""
    s2ef, is2re = data / "oc20_s2ef", data / "oc20_is2re"
    return [f"--dataset.train.src={s2ef / 'train'}", f"--dataset.val.src={s2ef / 'val'}",
            f"--dataset.test.src={s2ef / 'test'}", f"--dataset.relax.src={is2re / 'val'}"]


def build_data(data: Path, size: str) -> None:
    """``leignn-data demo`` unless a complete demo dataset is already there."""
    if (data / "manifest.json").is_file():
        print(f"using the demo data in {data}")
        return
    subprocess.run([sys.executable, "-m", "leignn_plugin.data", "demo", str(data), "--size", size], check=True)


def run_demo(out: Path, size: str = "default", epochs: int | None = None) -> dict:
    """The whole chain; returns the summary that is also written to ``out/summary.json``."""
    out = out.resolve()
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
    summary = {
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
        "plots": [str(parity_plot(predictions, data / "oc20_s2ef" / "test", plots / "parity_test.png"))],
    }
    if curve:
        summary["plots"].append(str(curve_plot(curve, plots / "training_force_mae.png")))
    write_json(summary, out / "summary.json")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leignn-demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--size", choices=("default", "small"), default="default", help="demo dataset size")
    parser.add_argument("--epochs", type=int, help="override the config's max_epochs")
    args = parser.parse_args(argv)
    try:
        summary = run_demo(args.out, args.size, args.epochs)
    except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as err:
        print(f"leignn-demo: error: {err}", file=sys.stderr)
        return 1
    first_last = summary["training_force_mae_first_last"]
    print("\nLEIGNN demo finished")
    if first_last:
        print(f"  training force MAE: {first_last[0]:.3f} -> {first_last[1]:.3f} eV/Å")
    print(f"  test energy MAE {summary['test']['energy_mae']:.3f} eV, force MAE {summary['test']['forces_mae']:.3f} eV/Å"
          f" ({summary['test']['frames']} frames)")
    print(f"  relaxations: {summary['relaxations']}, of which {summary['relaxations_taking_steps']} took steps "
          f"and {summary['relaxations_lowering_energy']} of those lowered the energy")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  predictions: {summary['predictions']}")
    print(f"  metrics:     {args.out.resolve() / 'summary.json'}")
    print(f"  tensorboard: {summary['tensorboard']}")
    for plot in summary["plots"]:
        print(f"  plot:        {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
