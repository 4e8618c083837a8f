"""The shared base config (data, optimiser, schedule, outputs, losses) and one config per model.

``base.yml`` holds everything but the model; each ``<model>.yml`` includes it and adds its
``model:`` section, so a run is reproduced from the repository root with
``python main.py --mode train --config-yml <out>/configs/<model>.yml --cpu --seed <seed>``.

The recipe is the demo's (``configs/demo/leignn_s2ef.yml``: L1 energy + 50 x L1 forces as in the
paper, AdamW with amsgrad, batch 16, EMA 0.99, gradient clipping at 50) with two changes for a fixed,
short budget: the learning rate follows a cosine from ``lr`` to ``lr / 100`` over the whole run (a
plateau schedule would never decay in a few epochs), and energies are fitted per element (linear
references) with a normaliser of zero mean. The references make the energy target small for every
model alike; the zero mean keeps the de-normalised energy a sum of atomic terms, so that the
extensivity check tests the model, not a per-structure offset added by the normaliser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from leignn_plugin.bench.accuracy.models import AccuracyModel, Size
from leignn_plugin.errors import UsageError

OC20_KEYS = {"y": "energy", "force": "forces"}


class AccuracyError(UsageError, ValueError):
    """A bad option or dataset of ``leignn-bench accuracy``: reported as one line."""


@dataclass(frozen=True)
class Recipe:
    """The training budget every model gets."""

    epochs: int = 5
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 2.0e-3
    ema_decay: float = 0.99
    clip_grad_norm: float = 50.0
    force_coefficient: float = 50.0


@dataclass
class Splits:
    """Train/val/test LMDBs and what the probe found in them."""

    train: Path
    val: Path
    test: Path
    description: str
    sizes: dict[str, int] = field(default_factory=dict)
    key_mapping: dict[str, str] | None = None
    use_pbc: bool = True
    all_periodic: bool = True

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.sizes["train"] / batch_size)


def _probe_one(src: Path, option: str) -> tuple[int, dict]:
    """Number of frames and the fields of the first few frames of one LMDB (fairchem's reader)."""
    from leignn_plugin.data.safe_records import open_lmdb_dataset

    dataset = open_lmdb_dataset(src, option)
    if len(dataset) == 0:
        raise AccuracyError(f"{option}: {src} holds no frames")
    frames = [dataset[i] for i in range(min(len(dataset), 8))]
    keys = set(frames[0].keys())
    energy = "y" if "y" in keys else "energy" if "energy" in keys else None
    forces = "force" if "force" in keys else "forces" if "forces" in keys else None
    if energy is None or forces is None:
        raise AccuracyError(f"{option}: {src} has no energy/forces labels (expected fields y and force, as "
                            f"OC20, or energy and forces, as leignn-data writes); found {', '.join(sorted(keys))}")
    missing = [k for k in ("sid", "fid", "fixed") if k not in keys]
    if missing:
        raise AccuracyError(f"{option}: {src} frames lack {', '.join(missing)} (fairchem's predictions need "
                            "sid, fid and fixed to be matched to the labels; leignn-data writes all three)")
    pbc = [bool(f.pbc.any()) if "pbc" in f else True for f in frames]
    periodic = [bool(f.pbc.all()) if "pbc" in f else True for f in frames]
    return len(dataset), {"energy": energy, "forces": forces, "pbc": any(pbc), "all_periodic": all(periodic)}


def probe_splits(train: Path, val: Path, test: Path, description: str) -> Splits:
    """Check the three LMDBs and read what the configs need: key names, periodicity, fixed atoms."""
    found = {name: _probe_one(src, f"--{name}") for name, src in (("train", train), ("val", val), ("test", test))}
    fields = {name: info for name, (_, info) in found.items()}
    names = {(f["energy"], f["forces"]) for f in fields.values()}
    if len(names) > 1:
        raise AccuracyError("--train/--val/--test: the splits name their labels differently "
                            f"({', '.join(sorted('/'.join(n) for n in names))}); write them with one convention")
    energy, forces = names.pop()
    return Splits(
        train=train, val=val, test=test, description=description,
        sizes={name: n for name, (n, _) in found.items()},
        key_mapping=OC20_KEYS if (energy, forces) == ("y", "force") else None,
        use_pbc=any(f["pbc"] for f in fields.values()),
        all_periodic=all(f["all_periodic"] for f in fields.values()),
    )


def repo_relative(path: Path, repo_root: Path) -> str:
    """``path`` relative to the repository root (main.py runs there) when inside it, else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(repo_root.resolve()))
    except ValueError:
        return str(path)


def base_config(splits: Splits, recipe: Recipe, repo_root: Path) -> dict:
    """Everything but the model: data, normalisation, outputs, losses, metrics, optimiser, schedule."""
    fit_batches = max(1, min(20, math.ceil(splits.sizes["train"] / 64)))
    train: dict = {"format": "lmdb", "src": repo_relative(splits.train, repo_root)}
    if splits.key_mapping:
        train["key_mapping"] = dict(splits.key_mapping)
    train["transforms"] = {
        "element_references": {"fit": {"targets": ["energy"], "batch_size": 64, "num_batches": fit_batches}},
        "normalizer": {"fit": {"targets": {"energy": {"mean": 0.0}, "forces": {"mean": 0.0}},
                               "batch_size": 64, "num_batches": fit_batches}},
    }
    total_steps = recipe.epochs * splits.steps_per_epoch(recipe.batch_size)
    return {
        "trainer": "forces",
        "logger": "tensorboard",
        "dataset": {"train": train, "val": {"src": repo_relative(splits.val, repo_root)}},
        "outputs": {
            "energy": {"shape": 1, "level": "system"},
            "forces": {"irrep_dim": 1, "level": "atom", "train_on_free_atoms": True, "eval_on_free_atoms": True},
        },
        "loss_functions": [{"energy": {"fn": "mae", "coefficient": 1}},
                           {"forces": {"fn": "mae", "coefficient": recipe.force_coefficient}}],
        "evaluation_metrics": {
            "metrics": {"energy": ["mae"], "forces": ["mae", "cosine_similarity"],
                        "misc": ["energy_forces_within_threshold"]},
            "primary_metric": "forces_mae",
        },
        "optim": {
            "batch_size": recipe.batch_size, "eval_batch_size": recipe.eval_batch_size, "num_workers": 0,
            "optimizer": "AdamW", "optimizer_params": {"amsgrad": True, "weight_decay": 0.0},
            "lr_initial": recipe.lr, "scheduler": "CosineAnnealingLR", "T_max": total_steps,
            "eta_min": recipe.lr / 100, "max_epochs": recipe.epochs, "ema_decay": recipe.ema_decay,
            "clip_grad_norm": recipe.clip_grad_norm,
        },
        "task": {"prediction_dtype": "float32"},
    }


def model_config(model: AccuracyModel, size: Size, splits: Splits) -> dict:
    """A model's config: the shared base by ``includes`` and the model's own section."""
    return {"includes": ["base.yml"], "model": model.section(size, splits.use_pbc)}


def _dump(config: dict, header: list[str], path: Path) -> Path:
    text = "".join(f"# {line}\n" if line else "#\n" for line in header)
    path.write_text(text + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110))
    return path


def write_configs(folder: Path, models: list[AccuracyModel], size: Size, splits: Splits, recipe: Recipe,
                  repo_root: Path) -> dict[str, Path]:
    """Write ``base.yml`` and one ``<model>.yml`` per model into ``folder``; returns the model configs."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = splits.steps_per_epoch(recipe.batch_size)
    _dump(base_config(splits, recipe, repo_root), [
        "Shared base of the leignn-bench accuracy configs: data, normalisation, outputs, losses, optimiser.",
        f"Data: {splits.description}; {splits.sizes['train']} / {splits.sizes['val']} / {splits.sizes['test']} "
        "frames (train / val / test; the test split is scored after training).",
        f"T_max = {recipe.epochs} epochs x {steps} steps: change it with max_epochs or batch_size.",
    ], folder / "base.yml")
    written = {}
    for model in models:
        rel = repo_relative(folder / f"{model.name}.yml", repo_root)
        written[model.name] = _dump(model_config(model, size, splits), [
            f"{model.label} in leignn-bench accuracy: {model.note}.",
            "Only the model section differs between the models; the rest is base.yml. From the repository root:",
            f"  python main.py --mode train --config-yml {rel} --cpu --seed 0",
        ], folder / f"{model.name}.yml")
    return written
