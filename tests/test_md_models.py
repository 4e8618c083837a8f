"""Tiny LEIGNN checkpoints trained through fairchem's ``main.py`` for the MD tests, and loading checks.

``md_models`` trains two models once per session on an EMT-labelled Cu/Ni LMDB (written here with
fairchem's AtomsToGraphs): a conservative one (gradient forces and stress, element references and
explicit normalizers with equal energy/forces rmsd) and a direct-force one; it also runs
``main.py --mode predict`` on the test split with the conservative ``checkpoint.pt``. Other MD test
modules import ``trained_models``; the result is cached under pytest's session base folder.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from fairchem.core.preprocessing import AtomsToGraphs

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.checkpoints import load_potential

REPO = Path(__file__).resolve().parents[1]
ELEMENT_REFS = {28: -0.05, 29: 0.02}  # eV per atom, added back by the trainer's de-normalization


def cu_ni_cell(seed: int, rattle: float = 0.08) -> Atoms:
    """A strained, rattled 32-atom fcc Cu cell with 8 Ni atoms."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.numbers[rng.choice(len(atoms), 8, replace=False)] = 28
    atoms.set_cell(atoms.cell.array * (1 + rng.uniform(-0.02, 0.02, (3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms


def write_lmdb(folder: Path, frames: list[Atoms]) -> None:
    """An S2EF LMDB of EMT energies and forces, as fairchem's LmdbDataset reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    a2g = AtomsToGraphs(r_energy=True, r_forces=True, r_edges=False, r_pbc=True, r_fixed=True)
    env = lmdb.open(str(folder / "data.lmdb"), map_size=1 << 28, subdir=False, meminit=False)
    with env.begin(write=True) as txn:
        for k, atoms in enumerate(frames):
            atoms.calc = EMT()
            data = a2g.convert(atoms, sid=k)
            data.fid = 0
            txn.put(f"{k}".encode("ascii"), pickle.dumps(data, protocol=-1))
    env.sync()
    env.close()


def _config(data: Path, refs: Path, conservative: bool, energy: tuple[float, float], force_rms: float) -> dict:
    mean, rmsd = energy
    forces_rmsd = rmsd if conservative else force_rms  # conservative: equal scales keep F = -dE/dx
    return {
        "trainer": "ocp",
        "logger": "tensorboard",
        "dataset": {
            "train": {
                "format": "lmdb",
                "src": str(data / "train"),
                "transforms": {
                    "element_references": {"energy": {"file": str(refs)}},
                    "normalizer": {"energy": {"mean": mean, "rmsd": rmsd},
                                   "forces": {"mean": 0.0, "rmsd": forces_rmsd}},
                },
            },
            "val": {"src": str(data / "val")},
        },
        "outputs": {
            "energy": {"shape": 1, "level": "system"},
            "forces": {"irrep_dim": 1, "level": "atom", "train_on_free_atoms": True, "eval_on_free_atoms": True},
        },
        "loss_functions": [{"energy": {"fn": "mae", "coefficient": 1}}, {"forces": {"fn": "mae", "coefficient": 20}}],
        "evaluation_metrics": {"metrics": {"energy": ["mae"], "forces": ["mae"]}, "primary_metric": "forces_mae"},
        "model": {
            "name": "leignn", "hidden_channels": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0,
            "max_neighbors": 100, "num_elements": 30, "regress_forces": True, "direct_forces": not conservative,
            "regress_stress": conservative, "use_pbc": True, "otf_graph": True,
        },
        "optim": {"batch_size": 8, "eval_batch_size": 8, "num_workers": 0, "lr_initial": 5.0e-3,
                  "max_epochs": 3, "ema_decay": 0.9, "scheduler": "Null", "eval_every": 6},
        "task": {"prediction_dtype": "float32"},
    }


def _main_py(mode: str, config: Path, run_dir: Path, *extra: str) -> None:
    cmd = [sys.executable, str(REPO / "main.py"), "--mode", mode, "--config-yml", str(config), "--cpu",
           "--run-dir", str(run_dir), *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"main.py --mode {mode} failed:\n{proc.stderr[-3000:]}"


@dataclass
class TrainedModels:
    """Checkpoints and data of the session's tiny models."""

    data: Path
    conservative: Path
    conservative_best: Path
    direct: Path
    predictions: Path


def trained_models(base: Path) -> TrainedModels:
    """Train (or reuse, when already under ``base``) the two tiny models and the predict run."""
    data, refs = base / "data", base / "refs.pt"
    done = base / "models.yml"
    if done.is_file():
        return TrainedModels(**{k: Path(v) for k, v in yaml.safe_load(done.read_text()).items()})
    train = [cu_ni_cell(k) for k in range(48)]
    write_lmdb(data / "train", train)
    write_lmdb(data / "val", [cu_ni_cell(100 + k) for k in range(8)])
    write_lmdb(data / "test", [cu_ni_cell(200 + k) for k in range(4)])
    table = torch.zeros(119)
    for z, value in ELEMENT_REFS.items():
        table[z] = value
    torch.save({"element_references": table}, refs)

    energies = np.array([a.get_potential_energy() - sum(ELEMENT_REFS[z] for z in a.numbers) for a in train])
    force_rms = float(np.sqrt(np.mean([np.mean(a.get_forces() ** 2) for a in train])))
    energy = (float(energies.mean()), float(max(energies.std(), 0.1)))

    paths = {}
    for name, conservative in (("conservative", True), ("direct", False)):
        config = base / f"{name}.yml"
        config.write_text(yaml.safe_dump(_config(data, refs, conservative, energy, force_rms)))
        _main_py("train", config, base / f"run_{name}")
        (checkpoint,) = (base / f"run_{name}" / "checkpoints").glob("*/checkpoint.pt")
        paths[name] = checkpoint
    paths["conservative_best"] = paths["conservative"].with_name("best_checkpoint.pt")
    _main_py("predict", base / "conservative.yml", base / "run_predict", "--checkpoint", str(paths["conservative"]),
             f"--dataset.test.src={data / 'test'}")
    (paths["predictions"],) = (base / "run_predict" / "results").glob("*/ocp_predictions.npz")
    models = TrainedModels(data=data, **paths)
    done.write_text(yaml.safe_dump({k: str(v) for k, v in models.__dict__.items()}))
    return models


@pytest.fixture(scope="session")
def md_models(tmp_path_factory) -> TrainedModels:
    return trained_models(tmp_path_factory.getbasetemp() / "md_models")


def test_trained_checkpoint_has_what_the_loader_relies_on(md_models):
    checkpoint = torch.load(md_models.conservative, map_location="cpu", weights_only=False)
    assert all(key.startswith("module.") for key in checkpoint["state_dict"])  # DDP, even on one CPU rank
    assert checkpoint["ema"] is not None and checkpoint["config"]["optim"]["ema_decay"] == 0.9
    assert set(checkpoint["normalizers"]) == {"energy", "forces"}
    assert set(checkpoint["elementrefs"]) == {"energy"}
    assert md_models.conservative_best.is_file()


def test_loader_uses_ema_weights_and_switches_off_otf_graph(md_models):
    checkpoint = torch.load(md_models.conservative, map_location="cpu", weights_only=False)
    with_ema = load_potential(md_models.conservative)
    without = load_potential(md_models.conservative, use_ema=False)
    assert with_ema.used_ema and not without.used_ema
    trainable = [p for p in with_ema.model.parameters() if p.requires_grad]
    for param, shadow in zip(trainable, checkpoint["ema"]["shadow_params"]):
        torch.testing.assert_close(param.detach(), shadow.float())
    raw = torch.cat([p.detach().flatten() for p in without.model.parameters()])
    ema = torch.cat([p.detach().flatten() for p in with_ema.model.parameters()])
    assert not torch.allclose(raw, ema)
    assert with_ema.conservative and with_ema.has_stress


def test_non_leignn_checkpoint_is_refused(md_models, tmp_path):
    checkpoint = torch.load(md_models.conservative, map_location="cpu", weights_only=False)
    checkpoint["config"]["model"] = {"name": "painn", "hidden_channels": 16}
    path = tmp_path / "painn.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="holds a 'painn' model, not LEIGNN"):
        load_potential(path)


def test_unreadable_and_missing_checkpoints_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_potential(text)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_potential(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a fairchem checkpoint"):
        load_potential(plain)


def test_weights_that_do_not_fit_the_config_are_refused(md_models, tmp_path):
    checkpoint = torch.load(md_models.conservative, map_location="cpu", weights_only=False)
    checkpoint["config"]["model"]["hidden_channels"] = 32
    path = tmp_path / "mismatch.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="weights do not match the model in its config"):
        load_potential(path)
