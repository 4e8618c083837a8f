"""Score one trained model with fairchem 1.10's own trainer, before and after training: the child
process ``leignn-bench accuracy`` runs for each model and seed (this host's ``trainer_evaluation``).

    python -m leignn_plugin.fairchem1.trainer_evaluation --config C --seed S --test DIR --checkpoint BEST \
        --run-dir R --identifier I --cells CELLS.extxyz --out RESULT.json

The trainer is built from the same config and seed as the training run, so fairchem's seeding gives
it the same initial weights and the same fitted element references and normalisers: that is the
untrained model, scored on the validation split (the learning curve's epoch 0) and predicted on the
test split. Then the best checkpoint is loaded and the test split predicted again, timed (inference
time per structure, batches of ``eval_batch_size``, graph construction included). Last, the trained
model's energies of the extensivity supercells, also through the trainer (so that fairchem's
baselines are read exactly as their trainer reads them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def trainer_config(config: Path, seed: int, test: Path, run_dir: Path, identifier: str) -> dict:
    """The config ``main.py`` would build for this model and seed, with the test split added."""
    from fairchem.core.common.flags import flags
    from fairchem.core.common.utils import build_config

    from leignn_plugin.fairchem1.cli import unique_run_id

    argv = ["--mode", "validate", "--config-yml", str(config), "--cpu", "--seed", str(seed),
            "--run-dir", str(run_dir), "--identifier", identifier]
    args, _ = flags.get_parser().parse_known_args(argv)
    built = build_config(args, [f"--dataset.test.src={test}"])
    built["timestamp_id"] = unique_run_id(run_dir, identifier)
    return built


def _metrics(metrics: dict) -> dict[str, float]:
    return {key: float(value["metric"]) for key, value in metrics.items()}


def _supercell_energies(trainer, cells, cutoff: float) -> list[dict]:
    """Energies of the n x 1 x 1 supercells of every cell, predicted by the trainer in one batch per cell."""
    from fairchem.core.common.data_parallel import data_list_collater
    from fairchem.core.preprocessing import AtomsToGraphs

    from leignn_plugin.bench.accuracy.extensivity import REPEATS, supercell

    convert = AtomsToGraphs(r_edges=False, r_fixed=True, r_pbc=True)
    out = []
    for cell in cells:
        data = [convert.convert(supercell(cell, n, cutoff)) for n in REPEATS]
        batch = data_list_collater(data, otf_graph=True)
        energies = trainer.predict(batch, per_image=False, disable_tqdm=True)["energy"].view(-1)
        out.append({"label": cell.info.get("label", cell.get_chemical_formula()), "natoms": len(cell),
                    "energies": [float(e) for e in energies]})
    return out


def evaluate(config: dict, checkpoint: Path, cells_file: Path | None) -> dict:
    """Untrained validation and test predictions, then the trained model's timed test predictions and
    supercell energies; the paths of the two prediction files are in the result."""
    import ase.io
    from fairchem.core.common import distutils
    from fairchem.core.common.utils import new_trainer_context

    from leignn_plugin.fairchem1.safe_load import safe_loading

    distutils.setup_env_local()
    with safe_loading(False), new_trainer_context(config=config) as ctx:
        trainer = ctx.trainer
        model = trainer._unwrapped_model
        params = sum(p.numel() for p in model.parameters())
        results_dir = Path(trainer.config["cmd"]["results_dir"])
        untrained_val = _metrics(trainer.validate(split="val", disable_tqdm=True))
        trainer.predict(trainer.test_loader, results_file="untrained", disable_tqdm=True)

        trainer.load_checkpoint(checkpoint_path=str(checkpoint), inference_only=True)
        frames = len(trainer.test_loader.dataset)
        start = time.perf_counter()
        trainer.predict(trainer.test_loader, results_file="predictions", disable_tqdm=True)
        inference_s = time.perf_counter() - start

        cells = ase.io.read(cells_file, index=":") if cells_file is not None else []
        cutoff = float(config["model"].get("cutoff", 6.0))
        supercells = _supercell_energies(trainer, cells, cutoff)
    return {
        "params": params,
        "untrained_val": untrained_val,
        "untrained_predictions": str(results_dir / "s2ef_untrained.npz"),
        "predictions": str(results_dir / "s2ef_predictions.npz"),
        "test_frames": frames,
        "inference_s": inference_s,
        "inference_s_per_structure": inference_s / max(frames, 1),
        "threads": torch.get_num_threads(),
        "supercells": supercells,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leignn_plugin.fairchem1.trainer_evaluation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--identifier", required=True)
    parser.add_argument("--cells", type=Path, default=None, help="extxyz of the extensivity cells")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the result")
    args = parser.parse_args(argv)
    config = trainer_config(args.config, args.seed, args.test, args.run_dir, args.identifier)
    result = evaluate(config, args.checkpoint, args.cells)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
