"""Safe loading: no code runs from a checkpoint, a normalizer file or a predictions npz.

Each crafted file carries a payload (``conftest.Payload``) that would create a marker file when
unpickled. Every loader refuses it with one line naming the file, the marker never appears, and
nothing already in the output places is overwritten or half-written. Trainer-written checkpoints
(with EMA, optimizer, scheduler, normalizers) and the demo fixture still load weights-only, and a
file that needs more loads only with ``--trust-checkpoint`` / ``trust_checkpoint=True``.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read
from conftest import Payload, error_line

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.checkpoint import load_potential, read_checkpoint
from leignn_plugin.fairchem1.safe_load import safe_loading
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.workflows.demo import S2EF_CONFIG, data_overrides
from leignn_plugin.workflows.fairchem_runs import MAIN_PY, REPO_ROOT, run_main

FIXTURE = Path(__file__).parent / "fixtures" / "demo_checkpoint"
DEMO_CHECKPOINT = FIXTURE / "checkpoint.pt"
FRAMES = FIXTURE / "frames.extxyz"
HYDRA = "leignn_plugin.fairchem1.hydra_conversion"
# A small direct-force model, quick to train for one epoch on the small demo set.
TINY = ["--model.hidden_channels=16", "--model.num_layers=1", "--model.num_rbf=8", "--optim.batch_size=8"]


def demo_checkpoint() -> dict:
    return torch.load(DEMO_CHECKPOINT, map_location="cpu", weights_only=True)


def save(checkpoint: dict, path: Path) -> Path:
    torch.save(checkpoint, path)
    return path


def crafted_checkpoint(folder: Path, marker: Path) -> Path:
    """The demo checkpoint with a payload among its entries: a working checkpoint in every other way."""
    checkpoint = demo_checkpoint()
    checkpoint["val_metrics"] = Payload(marker)
    return save(checkpoint, folder / "crafted.pt")


def checkpoint_with_a_date(folder: Path) -> Path:
    """A checkpoint holding a harmless Python object (a date), which weights-only loading refuses."""
    checkpoint = demo_checkpoint()
    checkpoint["saved_on"] = datetime.date(2026, 1, 1)
    return save(checkpoint, folder / "dated.pt")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to show that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


def main_py(mode: str, data: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(str(MAIN_PY), "--mode", mode, "--config-yml", str(S2EF_CONFIG), "--cpu", "--run-dir", str(run_dir),
               "--identifier", "safe", *data_overrides(data), *extra)


def earlier_run(run_dir: Path) -> dict[str, bytes]:
    """An earlier run's files in ``run_dir``, which a refused run must leave as they are."""
    results = run_dir / "results" / "earlier"
    results.mkdir(parents=True)
    (results / "s2ef_predictions.npz").write_bytes(b"earlier predictions")
    return snapshot(run_dir)


def assert_names(line: str, *parts: str) -> None:
    for part in parts:
        assert part in line, line


# --- crafted files: refused, one line, the payload never runs ---------------------------------------------


def test_crafted_checkpoint_to_the_calculator(tmp_path, payload_marker):
    path = crafted_checkpoint(tmp_path, payload_marker)
    with pytest.raises(CheckpointError) as raised:
        LEIGNNCalculator(path)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert_names(message, "refused to load", str(path), "builtins.getattr", "--trust-checkpoint")
    assert isinstance(raised.value, UsageError) and isinstance(raised.value, ValueError)
    assert not payload_marker.exists()


def test_crafted_checkpoint_to_md_run(tmp_path, payload_marker, bad_input):
    path = crafted_checkpoint(tmp_path, payload_marker)
    out = tmp_path / "md"
    out.mkdir()
    for name, text in (("run.json", "{}"), ("md_log.csv", "step\n0\n"), ("md.traj", "earlier trajectory")):
        (out / name).write_text(text)
    before = snapshot(out)
    proc = run("-m", "leignn_plugin.md.cli", "run", "--checkpoint", str(path), "--structure", str(FRAMES),
               "--index", "0", "--steps", "2", "--out", str(out), "--overwrite", "--no-progress")
    line = error_line(proc.returncode, proc.stderr, "leignn-md")
    assert_names(line, "refused to load", str(path), "builtins.getattr")
    assert not payload_marker.exists()
    assert snapshot(out) == before
    bad_input("crafted checkpoint given to leignn-md (code in the pickle)",
              "leignn-md run --checkpoint crafted.pt ... --out RUN --overwrite", line)


def test_crafted_checkpoint_to_the_hydra_conversion(tmp_path, payload_marker, bad_input):
    path = crafted_checkpoint(tmp_path, payload_marker)
    out = tmp_path / "hydra" / "hydra.pt"
    out.parent.mkdir()
    out.write_bytes(b"an earlier hydra checkpoint")
    before = snapshot(out.parent)
    proc = run("-m", HYDRA, str(path), str(out))
    line = error_line(proc.returncode, proc.stderr, "leignn-to-hydra")
    assert_names(line, "refused to load", str(path), "builtins.getattr")
    assert not payload_marker.exists()
    assert snapshot(out.parent) == before
    bad_input("crafted checkpoint given to the hydra conversion (code in the pickle)",
              f"python -m {HYDRA} crafted.pt hydra.pt", line)


def test_crafted_checkpoint_to_main_predict(demo_data, tmp_path, payload_marker, bad_input):
    path = crafted_checkpoint(tmp_path, payload_marker)
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(path))
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_names(line, "refused to load", str(path), "builtins.getattr")
    assert not payload_marker.exists()
    assert snapshot(run_dir) == before
    bad_input("crafted checkpoint (code in the pickle)",
              "main.py --mode predict ... --checkpoint crafted.pt", line)


def test_crafted_normalizer_file_named_in_the_config(demo_data, tmp_path, payload_marker, bad_input):
    """fairchem's trainer torch.loads the file itself: the guard in every rank refuses it."""
    crafted = save({"energy": Payload(payload_marker)}, tmp_path / "crafted.pt")
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(DEMO_CHECKPOINT),
                   f"--dataset.train.transforms.normalizer.file={crafted}")
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_names(line, "refused to load", str(crafted), "builtins.getattr")
    assert not payload_marker.exists()
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not list(run_dir.glob("results/*-safe/*.npz"))
    bad_input("crafted normalizer file named in the config (code in the pickle)",
              "main.py --mode predict ... --dataset.train.transforms.normalizer.file=crafted.pt", line)


def _predictions(path: Path, ids: np.ndarray) -> Path:
    np.savez(path, ids=ids, energy=np.zeros(2, np.float32), forces=np.zeros((6, 3), np.float32),
             chunk_idx=np.array([3]))
    return path


def test_crafted_predictions_to_the_submission(tmp_path, payload_marker, bad_input):
    files = {split: _predictions(tmp_path / f"{split}.npz", np.array([f"{k}_0", f"{k}_1"]))
             for k, split in enumerate(("ood_ads", "ood_cat", "ood_both"))}
    crafted = _predictions(tmp_path / "id.npz", np.array(["7_0", Payload(payload_marker)], dtype=object))
    out = tmp_path / "submission" / "submission.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier submission")
    before = snapshot(out.parent)
    proc = run("-m", "leignn_plugin.workflows.submission", "--id", str(crafted), "--ood-ads", str(files["ood_ads"]),
               "--ood-cat", str(files["ood_cat"]), "--ood-both", str(files["ood_both"]), "--out", str(out))
    line = error_line(proc.returncode, proc.stderr, "leignn-submission")
    assert_names(line, "refused", str(crafted), "key 'ids'", "pickled Python objects")
    assert not payload_marker.exists()
    assert snapshot(out.parent) == before
    bad_input("crafted predictions npz (code in an object array)",
              "leignn-submission --id crafted.npz ... --out submission.npz", line)


# --- files that are not (LEIGNN) checkpoints ---------------------------------------------------------------


def test_truncated_checkpoint_to_main(demo_data, tmp_path, bad_input):
    raw = DEMO_CHECKPOINT.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(raw[: len(raw) // 2])
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("validate", demo_data, run_dir, "--checkpoint", str(path))
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_names(line, str(path), "not a readable torch checkpoint", "truncated")
    assert snapshot(run_dir) == before
    bad_input("truncated checkpoint", "main.py --mode validate ... --checkpoint truncated.pt", line)


def _painn(checkpoint: dict) -> dict:
    checkpoint["config"]["model"] = {"name": "painn", "hidden_channels": 64}
    return checkpoint


def _empty(checkpoint: dict) -> dict:
    checkpoint["state_dict"] = {}
    return checkpoint


def _foreign(checkpoint: dict) -> dict:
    checkpoint["state_dict"] = {"encoder.weight": torch.zeros(4, 4), "encoder.bias": torch.zeros(4)}
    return checkpoint


NOT_LEIGNN = {
    "checkpoint of another model (not LEIGNN)": (_painn, "holds a 'painn' model, not LEIGNN"),
    "checkpoint with an empty state dict": (_empty, "holds no weights"),
    "checkpoint whose weights belong to another model": (_foreign, "holds no LEIGNN weights"),
}


@pytest.mark.parametrize("kind", sorted(NOT_LEIGNN))
def test_checkpoint_without_leignn_weights_to_the_hydra_conversion(kind, tmp_path, bad_input):
    change, problem = NOT_LEIGNN[kind]
    path = save(change(demo_checkpoint()), tmp_path / "other.pt")
    out = tmp_path / "hydra"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    before = snapshot(out)
    proc = run("-m", HYDRA, str(path), str(out / "hydra.pt"))
    line = error_line(proc.returncode, proc.stderr, "leignn-to-hydra")
    assert_names(line, str(path), problem)
    assert snapshot(out) == before
    bad_input(kind, f"python -m {HYDRA} other.pt hydra.pt", line)


@pytest.mark.parametrize("kind", sorted(NOT_LEIGNN))
def test_checkpoint_without_leignn_weights_to_the_calculator(kind, tmp_path):
    change, problem = NOT_LEIGNN[kind]
    path = save(change(demo_checkpoint()), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=problem):
        LEIGNNCalculator(path)


# --- what must still load ------------------------------------------------------------------------------


def test_demo_checkpoint_fixture_loads_weights_only():
    torch.load(DEMO_CHECKPOINT, map_location="cpu", weights_only=True)  # no extra globals needed
    checkpoint = read_checkpoint(DEMO_CHECKPOINT)
    assert checkpoint["config"]["model"]["name"] == "leignn"
    assert load_potential(DEMO_CHECKPOINT).normalizers.keys() == {"energy", "forces"}


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    """One epoch of a tiny model through main.py: checkpoint.pt, best_checkpoint.pt, normalizers.pt."""
    runs = tmp_path_factory.mktemp("safe-runs")
    overrides = [*data_overrides(demo_data), *TINY, "--optim.max_epochs=1"]
    train = run_main("train", S2EF_CONFIG, runs, "safe-train", overrides, echo=False)
    return {"runs": runs, "dir": train.checkpoint_dir, "overrides": overrides}


def test_trainer_checkpoints_load_weights_only(trained):
    checkpoint = read_checkpoint(trained["dir"] / "checkpoint.pt")
    for key in ("ema", "optimizer", "scheduler", "normalizers", "step", "epoch"):
        assert checkpoint.get(key) is not None, key
    assert load_potential(trained["dir"] / "checkpoint.pt").used_ema
    best = load_potential(trained["dir"] / "best_checkpoint.pt")
    assert best.normalizers.keys() == {"energy", "forces"}


def test_trainer_resumes_and_predicts_with_its_own_files(trained):
    """fairchem's own loads in the trainer (checkpoint, normalizers.pt) pass the guard."""
    ckpt_dir, runs, overrides = trained["dir"], trained["runs"], trained["overrides"]
    resumed = run_main("train", S2EF_CONFIG, runs, "safe-resume", [*overrides[:-1], "--optim.max_epochs=2"],
                       checkpoint=ckpt_dir / "checkpoint.pt", echo=False)
    before = torch.load(ckpt_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    after = torch.load(resumed.checkpoint_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert after > before
    normalizers = f"--dataset.train.transforms.normalizer.file={ckpt_dir / 'normalizers.pt'}"
    predicted = run_main("predict", S2EF_CONFIG, runs, "safe-predict", [*overrides, normalizers],
                         checkpoint=ckpt_dir / "checkpoint.pt", echo=False)
    assert "Loaded normalizers" in predicted.log
    with np.load(predicted.results_dir / "s2ef_predictions.npz", allow_pickle=False) as npz:
        assert np.all(np.isfinite(npz["energy"]))


def test_safe_loading_is_scoped(tmp_path, payload_marker):
    crafted = crafted_checkpoint(tmp_path, payload_marker)
    npz = tmp_path / "objects.npz"
    np.savez(npz, meta=np.array([Payload(payload_marker)], dtype=object))
    original = torch.load, np.load
    with safe_loading():
        with pytest.raises(CheckpointError, match="refused to load"):
            torch.load(crafted, weights_only=False)
        with np.load(npz, allow_pickle=True) as arrays, pytest.raises(ValueError, match="allow_pickle"):
            arrays["meta"]
    assert (torch.load, np.load) == original
    assert not payload_marker.exists()


# --- the opt-in for trusted files ------------------------------------------------------------------------


def test_trust_checkpoint_loads_a_file_that_needs_it(tmp_path):
    path = checkpoint_with_a_date(tmp_path)
    with pytest.raises(CheckpointError, match=r"datetime\.date"):
        LEIGNNCalculator(path)
    atoms = read(FRAMES, index=0)
    atoms.calc = LEIGNNCalculator(path, trust_checkpoint=True)
    energy = atoms.get_potential_energy()
    atoms.calc = LEIGNNCalculator(DEMO_CHECKPOINT)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    assert read_checkpoint(path, trust_checkpoint=True)["saved_on"] == datetime.date(2026, 1, 1)


def test_checkpoint_needing_an_object_to_main_unless_trusted(demo_data, tmp_path, bad_input):
    path = checkpoint_with_a_date(tmp_path)
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(path))
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_names(line, "refused to load", str(path), "datetime.date", "--trust-checkpoint")
    assert snapshot(run_dir) == before
    bad_input("checkpoint that needs a Python object (load it only if trusted)",
              "main.py --mode predict ... --checkpoint dated.pt", line)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(path), "--trust-checkpoint")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(run_dir.glob("results/*-safe/s2ef_predictions.npz"))


def test_trust_checkpoint_flags_of_md_and_hydra(tmp_path):
    path = checkpoint_with_a_date(tmp_path)
    proc = run("-m", "leignn_plugin.md.cli", "run", "--checkpoint", str(path), "--structure", str(FRAMES),
               "--index", "0", "--steps", "2", "--interval", "1", "--out", str(tmp_path / "md"), "--no-progress",
               "--trust-checkpoint")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "md" / "md.traj").is_file()
    proc = run("-m", HYDRA, str(path), str(tmp_path / "hydra.pt"), "--trust-checkpoint")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "hydra.pt").is_file()
