"""Multi-rank DDP training: two local CPU ranks follow the same trajectory as one rank with the same global batch.

Also holds the small EMT slab data set and training config the SLURM tests reuse.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "main.py"


def write_slab_lmdb(path: Path, count: int, seed: int) -> Path:
    """``count`` rattled Cu(111) slabs with an O adatom, EMT-labelled, as an OC20-style S2EF LMDB."""
    from ase.build import add_adsorbate, fcc111
    from ase.calculators.emt import EMT
    from fairchem.core.preprocessing import AtomsToGraphs

    rng = np.random.default_rng(seed)
    a2g = AtomsToGraphs(r_energy=True, r_forces=True, r_fixed=True, r_pbc=True, r_edges=False)
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path / "data.lmdb"), map_size=1 << 26, subdir=False, meminit=False, map_async=True)
    with env.begin(write=True) as txn:
        for index in range(count):
            slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
            add_adsorbate(slab, "O", 1.6, "fcc")
            layer = slab.get_tags()  # 1 = top layer ... 3 = bottom layer, 0 = adsorbate
            slab.rattle(stdev=0.08, seed=int(rng.integers(1 << 30)))
            slab.calc = EMT()
            data = a2g.convert(slab)
            data.fixed = torch.as_tensor(layer == 3, dtype=torch.float32)
            data.tags = torch.as_tensor(np.where(layer == 0, 2, np.where(layer == 1, 1, 0)), dtype=torch.long)
            data.y, data.force = data.energy, data.forces  # OC20 field names, mapped back by key_mapping
            del data.energy, data.forces
            data.sid = index
            data.fid = 0
            txn.put(f"{index}".encode("ascii"), pickle.dumps(data, protocol=-1))
    env.sync()
    env.close()
    return path


@pytest.fixture(scope="session")
def slab_data(tmp_path_factory) -> dict[str, Path]:
    """Train (16), val (8) and test (6) splits of the slab data set."""
    root = tmp_path_factory.mktemp("slabs")
    return {split: write_slab_lmdb(root / split, count, seed)
            for split, count, seed in (("train", 16, 0), ("val", 8, 1), ("test", 6, 2))}


def training_config(data: dict[str, Path], batch_size: int, max_epochs: int, lr_steps: int = 40, **optim) -> dict:
    """A demo-style S2EF config for a tiny LEIGNN (16 channels, 2 layers), LR decaying every step for ``lr_steps``."""
    return {
        "trainer": "ocp",
        "logger": "tensorboard",
        "dataset": {
            "train": {"format": "lmdb", "src": str(data["train"]), "key_mapping": {"y": "energy", "force": "forces"},
                      "transforms": {"normalizer": {"fit": {"targets": {"energy": {}, "forces": {"mean": 0.0}},
                                                            "batch_size": 16, "num_batches": 1}}}},
            "val": {"src": str(data["val"])},
            "test": {"src": str(data["test"])},
        },
        "outputs": {
            "energy": {"shape": 1, "level": "system"},
            "forces": {"irrep_dim": 1, "level": "atom", "train_on_free_atoms": True, "eval_on_free_atoms": True},
        },
        "loss_functions": [{"energy": {"fn": "mae", "coefficient": 1}}, {"forces": {"fn": "mae", "coefficient": 20}}],
        "evaluation_metrics": {"metrics": {"energy": ["mae"], "forces": ["mae"]}, "primary_metric": "forces_mae"},
        "model": {"name": "leignn", "hidden_channels": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0,
                  "max_neighbors": 16, "rbf": "gaussian", "envelope": "polynomial", "num_elements": 100,
                  "regress_forces": True, "direct_forces": True, "use_pbc": True, "otf_graph": True},
        "optim": {"batch_size": batch_size, "eval_batch_size": 4, "num_workers": 0, "optimizer": "AdamW",
                  "optimizer_params": {"amsgrad": True, "weight_decay": 0.0}, "lr_initial": 2.0e-3,
                  "scheduler": "LinearLR", "start_factor": 1.0, "end_factor": 0.2, "total_iters": lr_steps,
                  "max_epochs": max_epochs, "ema_decay": 0.9, "clip_grad_norm": 50, **optim},
        "task": {"prediction_dtype": "float32"},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def main_py(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python main.py ARGS`` in ``cwd`` and return the finished process (output captured)."""
    run_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=cwd, env=run_env, capture_output=True,
                          text=True, timeout=timeout)


def checkpoint_of(run_dir: Path, timestamp_id: str) -> dict:
    """The ``checkpoint.pt`` a run wrote last."""
    return torch.load(run_dir / "checkpoints" / timestamp_id / "checkpoint.pt", map_location="cpu")


def scalars(run_dir: Path, timestamp_id: str, tag: str) -> dict[int, float]:
    """Every value of one tensorboard scalar the run logged, by step (all event files of the run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for events in sorted((run_dir / "logs" / "tensorboard" / timestamp_id).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values.update({event.step: event.value for event in acc.Scalars(tag)})
    return values


def train_locally(config: Path, run_dir: Path, ranks: int, *extra: str) -> Path:
    """``main.py --mode train --cpu --num-gpus RANKS`` into ``run_dir`` (timestamp id ``run``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = main_py(["--mode", "train", "--config-yml", str(config), "--cpu", "--num-gpus", str(ranks),
                    "--run-dir", str(run_dir), "--timestamp-id", "run", "--seed", "3", *extra], run_dir, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def local_config(data: dict[str, Path], run_dir: Path, batch_size: int) -> Path:
    """Two epochs of 4 global batches of 4, validation every 2 steps, ``checkpoint.pt`` every 4."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_config(run_dir / "config.yml",
                        training_config(data, batch_size, max_epochs=2, eval_every=2, checkpoint_every=4))


def assert_same_training_state(steps: int, resumed: dict, reference: dict) -> None:
    """Step, weights, EMA, optimizer moments and scheduler position of two checkpoints agree."""
    assert resumed["step"] == reference["step"] == steps
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=1e-6, atol=1e-7)
    for got, want in zip(resumed["ema"]["shadow_params"], reference["ema"]["shadow_params"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    for key, state in reference["optimizer"]["state"].items():
        for slot in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            torch.testing.assert_close(resumed["optimizer"]["state"][key][slot], state[slot], rtol=1e-6, atol=1e-9)
    assert resumed["scheduler"]["last_epoch"] == reference["scheduler"]["last_epoch"]
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        reference["optimizer"]["param_groups"][0]["lr"], rel=1e-12)


@pytest.fixture(scope="module")
def one_rank_run(slab_data, tmp_path_factory) -> Path:
    """The reference: 8 uninterrupted steps on one rank with batch 4."""
    run_dir = tmp_path_factory.mktemp("one_rank")
    return train_locally(local_config(slab_data, run_dir, batch_size=4), run_dir, ranks=1)


def test_two_local_ranks_match_one_rank(one_rank_run, slab_data, tmp_path):
    """Two gloo ranks with batch 2 each take the same steps as one rank with batch 4 (val loss and weights)."""
    two_rank_run = train_locally(local_config(slab_data, tmp_path, batch_size=2), tmp_path, ranks=2)

    one, two = (scalars(run, "run", "val/loss") for run in (one_rank_run, two_rank_run))
    assert sorted(one) == [2, 4, 6, 8]
    assert sorted(two) == sorted(one)
    np.testing.assert_allclose([two[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=1e-5)
    assert one[8] < one[2]  # it trained

    single, double = (checkpoint_of(run, "run") for run in (one_rank_run, two_rank_run))
    assert single["step"] == double["step"] == 8
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(double["state_dict"][name], value, rtol=1e-4, atol=1e-5)


def test_resume_from_periodic_checkpoint_keeps_the_schedule(one_rank_run, slab_data, tmp_path):
    """fairchem's every-N-steps checkpoint precedes that step's LR update; resuming from it stays on schedule."""
    config = local_config(slab_data, tmp_path / "first", batch_size=4)
    first = train_locally(config, tmp_path / "first", 1, "--optim.max_epochs=1")
    periodic = checkpoint_of(first, "run")
    assert periodic["step"] == 4 and periodic["scheduler"]["last_epoch"] == 3  # saved before the 4th LR step

    resumed = train_locally(config, tmp_path / "resumed", 1, "--checkpoint",
                            str(first / "checkpoints" / "run" / "checkpoint.pt"))
    want = scalars(one_rank_run, "run", "train/lr")
    got = {**scalars(first, "run", "train/lr"), **scalars(resumed, "run", "train/lr")}
    assert sorted(got) == sorted(want) == list(range(1, 9))
    np.testing.assert_allclose([got[s] for s in range(1, 9)], [want[s] for s in range(1, 9)], rtol=1e-6)
    final, reference = checkpoint_of(resumed, "run"), checkpoint_of(one_rank_run, "run")
    assert final["step"] == 8 and final["scheduler"]["last_epoch"] == reference["scheduler"]["last_epoch"]
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], value, rtol=1e-5, atol=1e-7)
