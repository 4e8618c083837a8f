"""``make demo-fairchem2`` (``python -m leignn_plugin.fairchem2.demo``): the demo of the fairchem 2.x
target, ending as ``make demo`` does; a job of this host, built on the workflows the 1.10 demo uses.

Runs in ``.venv-fairchem2``. The steps are the commands a user would type (``leignn-data demo
--output-format aselmdb``, ``leignn-fairchem2 train`` of the direct and the conservative demo configs,
``leignn-fairchem2 lammps``), and the test split is predicted through ``FAIRChemCalculator`` as in a
user's script. The end is the 1.10 demo's block: training curves, test errors on the same test frames
scored by the same functions, the parity plot, where everything went, the LAMMPS energy file with a
plot of its total energy and the drift, and a line comparing with the 1.10 demo where it ran in the
same output folder. Runs again in the same folder: every run gets a folder of its own, the data are
reused while current, and the plots, summary and energy file are replaced.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leignn_plugin.errors import UsageError
from leignn_plugin.outputs import inside_output, replace_file
from leignn_plugin.workflows.demo import build_data
from leignn_plugin.workflows.demo_report import (
    SUMMARY_1X,
    SUMMARY_2X,
    comparison_line,
    demo_main,
    read_summary,
    test_errors_text,
)
from leignn_plugin.workflows.evaluation import curve_plot, pairs_parity_plot, score_pairs, write_json
from leignn_plugin.workflows.fairchem_runs import REPO_ROOT, fresh_folder

PROG = "leignn-demo-fairchem2"
CONFIGS = {"direct": REPO_ROOT / "configs/fairchem2/demo.yaml",
           "conservative": REPO_ROOT / "configs/fairchem2/demo_conservative.yaml"}
LAMMPS_INPUT = REPO_ROOT / "configs/fairchem2/lammps/nve_cu_slab.in"
TASK = "demo"
WRITTEN = ("fairchem2_runs", "fairchem2_plots", "lammps")
"""The folders under the output folder this demo writes into (besides its data folder)."""
BIN = Path(sys.executable).parent


def _echo_run(command: list[str], cwd: Path = REPO_ROOT, **kwargs) -> None:
    """Run a command of this environment as a user would, after printing it (``$ ...``)."""
    print("$ " + " ".join([Path(command[0]).name, *command[1:]]), flush=True)
    subprocess.run(command, cwd=cwd, check=True, **kwargs)


@dataclass(frozen=True)
class TrainedModel:
    """One ``leignn-fairchem2 train`` run of a demo config."""

    kind: str
    checkpoint: Path
    curve: list[tuple[float, float]]
    """(step, training loss) as the run recorded it in ``logs/training_log.jsonl``."""
    epoch_losses: list[float]
    """The mean recorded training loss of each epoch."""


def train(kind: str, data: Path, runs: Path, epochs: int | None) -> TrainedModel:
    """``leignn-fairchem2 train`` of the ``kind`` demo config, in a run folder of its own under ``runs``."""
    name = fresh_folder(runs, f"demo_{kind}").name
    s2ef = data / "oc20_s2ef"
    command = [str(BIN / "leignn-fairchem2"), "train", "-c", str(CONFIGS[kind]), f"train_src={s2ef / 'train'}",
               f"val_src={s2ef / 'val'}", f"job.run_dir={runs}", f"++job.timestamp_id={name}"]
    if epochs is not None:
        command.append(f"epochs={epochs}")
    _echo_run(command)
    checkpoint = runs / name / "checkpoints" / "final" / "inference_ckpt.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"leignn-fairchem2 train wrote no {checkpoint}")
    return TrainedModel(kind, checkpoint, *training_curve(runs / name / "logs" / "training_log.jsonl"))


def training_curve(record: Path) -> tuple[list[tuple[float, float]], list[float]]:
    """(step, training loss) pairs and the mean loss of each epoch, of a ``training_log.jsonl`` that
    ``leignn-fairchem2 train`` wrote."""
    curve, by_epoch = [], {}
    for line in record.read_text(encoding="utf-8").splitlines() if record.is_file() else []:
        entry = json.loads(line)
        if "train/loss" in entry:
            curve.append((float(entry["step"]), float(entry["train/loss"])))
            by_epoch.setdefault(int(entry.get("train/epoch", 0.0)), []).append(float(entry["train/loss"]))
    return curve, [float(np.mean(by_epoch[k])) for k in sorted(by_epoch)]


def predict_split(checkpoint: Path, split: Path, out: Path) -> dict[str, np.ndarray]:
    """Predict every labelled structure of the ``.aselmdb`` split through ``FAIRChemCalculator``; write
    the predictions as ``main.py --mode predict`` does (ids, energy, free-atom forces, chunk_idx) and
    return them beside the labels (free atoms), as :func:`~leignn_plugin.workflows.evaluation.score_pairs` takes them."""
    from fairchem.core import FAIRChemCalculator
    from tqdm import tqdm

    from leignn_plugin.data.aselmdb_reader import read_rows
    from leignn_plugin.fairchem2.checkpoint import load_predict_unit
    from leignn_plugin.fairchem2.evaluate import shards

    calc = FAIRChemCalculator(load_predict_unit(checkpoint), task_name=TASK)
    ids, energy, ref_energy, forces, ref_forces = [], [], [], [], []
    rows = (row for path in shards(split) for row in read_rows(path))
    for atoms, data in tqdm(rows, desc=f"predicting {split.name}", unit=" structures", leave=False):
        labels = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in labels or "forces" not in labels:
            continue
        free = np.ones(len(atoms), dtype=bool)
        for constraint in atoms.constraints:
            free[getattr(constraint, "index", [])] = False
        ids.append(f"{data['sid']}_{data['fid']}")
        ref_energy.append(float(labels["energy"]))
        ref_forces.append(np.asarray(labels["forces"], dtype=np.float64)[free])  # [free, 3]
        atoms.calc = calc
        energy.append(float(atoms.get_potential_energy()))
        forces.append(atoms.get_forces(apply_constraint=False)[free])  # [free, 3]
    if not ids:
        raise UsageError(f"{split}: no structure with energy and forces")
    chunk_idx = np.cumsum([len(f) for f in forces])[:-1]
    with replace_file(out, suffix=".npz") as tmp:
        np.savez(tmp, ids=np.array(ids), energy=np.array(energy), forces=np.concatenate(forces),
                 chunk_idx=chunk_idx)
    return {"energy": np.array(energy), "ref_energy": np.array(ref_energy),
            "forces": np.concatenate(forces), "ref_forces": np.concatenate(ref_forces)}


def timestep_fs(script: Path) -> float:
    """The ``timestep`` of a LAMMPS input in metal units (ps), in fs."""
    found = re.search(r"^timestep\s+(\S+)", script.read_text(encoding="utf-8"), re.MULTILINE)
    return float(found.group(1)) * 1000.0 if found else 1.0


def run_md(checkpoint: Path, folder: Path) -> dict:
    """NVE of the example LAMMPS input in ``folder`` (its log to ``lammps.log``); what its energy file says."""
    from leignn_plugin.fairchem2.lammps import loop_timing, read_energy_file

    folder.mkdir(parents=True, exist_ok=True)
    energy_file = inside_output(folder, "nve_energy.dat")  # LAMMPS opens it itself: no link there
    log = folder / "lammps.log"
    command = [str(BIN / "leignn-fairchem2"), "lammps", str(LAMMPS_INPUT), "--checkpoint", str(checkpoint),
               "--task", TASK]
    with replace_file(log) as tmp, tmp.open("w", encoding="utf-8") as sink:
        print(f"$ {' '.join(['leignn-fairchem2', *command[1:]])} > {log}", flush=True)
        done = subprocess.run(command, cwd=folder, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").strip().splitlines()[-15:])
        raise RuntimeError(f"leignn-fairchem2 lammps failed (exit {done.returncode}):\n{tail}")
    table = read_energy_file(energy_file)  # [rows, 4]: step, ke, pe, etotal
    seconds, steps, atoms = loop_timing(log.read_text(encoding="utf-8")) or (float("nan"), 0, 0)
    drift = float(np.abs(table[:, 3] - table[0, 3]).max())
    return {"energy_file": str(energy_file), "log": str(log), "rows": len(table), "atoms": atoms, "steps": steps,
            "timestep_fs": timestep_fs(LAMMPS_INPUT), "seconds": seconds, "total_energy_drift_eV": drift,
            "total_energy_drift_eV_per_atom": drift / atoms if atoms else None, "table": table}


def energy_plot(md: dict, out: Path) -> Path:
    """Kinetic and potential energy, and the total energy's change from step 0, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = md["table"]
    time_fs = table[:, 0] * md["timestep_fs"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 5), sharex=True)
    top.plot(time_fs, table[:, 1] - table[0, 1], label="kinetic")
    top.plot(time_fs, table[:, 2] - table[0, 2], label="potential (LEIGNN)")
    top.set_ylabel("change from step 0 (eV)")
    top.legend(frameon=False)
    bottom.plot(time_fs, 1000.0 * (table[:, 3] - table[0, 3]), marker="o", ms=3, color="C2")
    bottom.set_ylabel("total energy change (meV)")
    bottom.set_xlabel("time (fs)")
    top.set_title(f"LAMMPS NVE, {md['atoms']} atoms: total energy within {1000 * md['total_energy_drift_eV']:.2g} meV",
                  fontsize=10)
    fig.tight_layout()
    with replace_file(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out


def run_demo(out: Path, size: str = "default", epochs: int | None = None) -> dict:
    """The whole chain; returns the summary that is also written to ``out/summary_fairchem2.json``."""
    started = time.perf_counter()
    out = out.resolve()
    for folder in WRITTEN:
        inside_output(out, folder)
    data, runs, plots = out / "data_aselmdb", out / "fairchem2_runs", out / "fairchem2_plots"
    build_data(data, size, output_format="aselmdb")
    models = {kind: train(kind, data, runs, epochs) for kind in CONFIGS}
    test_split = data / "oc20_s2ef" / "test"
    pairs = {kind: predict_split(model.checkpoint, test_split, model.checkpoint.parents[2] / "test_predictions.npz")
             for kind, model in models.items()}
    md = run_md(models["conservative"].checkpoint, out / "lammps")

    plots.mkdir(parents=True, exist_ok=True)
    scores = {kind: score_pairs(p) for kind, p in pairs.items()}
    title = f"LEIGNN, make demo-fairchem2 (fairchem 2.x, direct forces): test split, {scores['direct']['frames']} frames"
    plot_paths = [pairs_parity_plot(pairs["direct"], plots / "parity_test.png", title)]
    for kind, model in models.items():
        if model.curve:
            plot_paths.append(curve_plot(model.curve, plots / f"training_loss_{kind}.png",
                                         f"training loss, {kind} forces"))
    plot_paths.append(energy_plot(md, plots / "nve_energy.png"))
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    summary = {
        "host": "fairchem 2.x",
        "data_version": manifest.get("data_version", 1),
        "test": scores["direct"],
        "checkpoint": str(models["direct"].checkpoint),
        "predictions": str(models["direct"].checkpoint.parents[2] / "test_predictions.npz"),
        "conservative": {"test": scores["conservative"], "checkpoint": str(models["conservative"].checkpoint),
                         "predictions": str(models["conservative"].checkpoint.parents[2] / "test_predictions.npz")},
        "training_loss_first_last_epoch": {kind: [m.epoch_losses[0], m.epoch_losses[-1]] if m.epoch_losses
                                           else None for kind, m in models.items()},
        "lammps": {k: v for k, v in md.items() if k != "table"},
        "plots": [str(p) for p in plot_paths],
    }
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(summary, out / SUMMARY_2X)
    return summary


def report(summary: dict, out: Path) -> str:
    """The block the demo ends with (as ``make demo``'s)."""
    lines = ["", "LEIGNN fairchem 2.x demo finished"]
    for kind, first_last in summary["training_loss_first_last_epoch"].items():
        if first_last:
            lines.append(f"  training loss ({kind} forces), mean of the first and last epoch: "
                         f"{first_last[0]:.3g} -> {first_last[1]:.3g}")
    direct, conservative = summary["test"], summary["conservative"]["test"]
    lines.append(f"  test (direct forces): {test_errors_text(direct)} ({direct['frames']} frames)")
    lines.append(f"  test (conservative):  {test_errors_text(conservative)}")
    md = summary["lammps"]
    per_atom = md["total_energy_drift_eV_per_atom"]
    lines.append(f"  NVE in LAMMPS (conservative model): {md['atoms']} atoms, {md['steps']} steps of "
                 f"{md['timestep_fs']:g} fs in {md['seconds']:.1f} s; total energy within "
                 f"{1000 * md['total_energy_drift_eV']:.2g} meV of step 0"
                 + (f" ({per_atom:.1e} eV/atom)" if per_atom is not None else ""))
    lines.append(f"  checkpoint:  {summary['checkpoint']}")
    lines.append(f"  checkpoint:  {summary['conservative']['checkpoint']} (conservative: the MD model)")
    lines.append(f"  predictions: {summary['predictions']}")
    lines.append(f"  predictions: {summary['conservative']['predictions']}")
    lines.append(f"  metrics:     {out / SUMMARY_2X}")
    lines.append(f"  energy file: {md['energy_file']} (step, ke, pe, etotal in eV)")
    lines.extend(f"  plot:        {plot}" for plot in summary["plots"])
    other = out / SUMMARY_1X
    line = comparison_line(summary, read_summary(other), "fairchem 1.10 demo", other)
    if line:
        lines.append(line)
    lines.append(f"  took {summary['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main(PROG, __doc__, "override both demo configs' epochs", run_demo, report, argv)


if __name__ == "__main__":
    sys.exit(main())
