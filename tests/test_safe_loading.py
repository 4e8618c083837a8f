"""Safe loading: no code runs from a checkpoint, a normalizer file, a dataset record or a predictions npz.

Each crafted file carries a payload (``conftest.Payload``, or a TorchScript archive that torch 2.4's
weights-only ``torch.load`` would hand to ``torch.jit.load``) that would create a marker file when
loaded. Every loader refuses it with one line naming the file, without offering ``--trust-checkpoint``
as the way out; the marker never appears, and nothing already in the output places is overwritten or
half-written. A hydra checkpoint's fine-tuning reference is never read, model names are matched
without importing anything, and malformed normalizers get one line. Trainer-written checkpoints
(with EMA, optimizer, scheduler, normalizers), the demo fixture and the legacy model names still load
weights-only, and a file that needs more loads only with ``--trust-checkpoint`` / ``trust_checkpoint=True``.
"""

from __future__ import annotations

import datetime
import io
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read
from conftest import Payload, error_line

from leignn_plugin.adapters.checkpoint_files import CheckpointError
from leignn_plugin.checkpoints import load_potential
from leignn_plugin.data.safe_records import RecordRefused, loads
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.checkpoint import read_checkpoint
from leignn_plugin.fairchem1.hydra_conversion import convert_checkpoint
from leignn_plugin.fairchem1.safe_load import check_run_checkpoint, safe_loading
from leignn_plugin.md.calculator import LEIGNNCalculator
from leignn_plugin.testing.scripted_payload import scripted_payload
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
    assert_names(message, "refused to load", str(path), "builtins.getattr")
    assert "--trust-checkpoint" not in message  # a refusal must not read as the way past the check
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
    proc = run("-m", HYDRA, str(path), str(out), "--overwrite")
    line = error_line(proc.returncode, proc.stderr, "leignn-to-hydra")
    assert_names(line, "refused to load", str(path), "builtins.getattr")
    assert not payload_marker.exists()
    assert snapshot(out.parent) == before
    bad_input("crafted checkpoint given to the hydra conversion (code in the pickle)",
              f"python -m {HYDRA} crafted.pt hydra.pt --overwrite", line)


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
               "--ood-cat", str(files["ood_cat"]), "--ood-both", str(files["ood_both"]), "--out", str(out),
               "--overwrite")
    line = error_line(proc.returncode, proc.stderr, "leignn-submission")
    assert_names(line, "refused", str(crafted), "key 'ids'", "pickled Python objects")
    assert not payload_marker.exists()
    assert snapshot(out.parent) == before
    bad_input("crafted predictions npz (code in an object array)",
              "leignn-submission --id crafted.npz ... --out submission.npz --overwrite", line)


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
    assert_names(line, "refused to load", str(path), "datetime.date", "only tensors, numbers, strings")
    assert "--trust-checkpoint" not in line
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


# --- TorchScript archives: refused before torch.load (torch 2.4 would hand them to torch.jit.load) -------


def torchscript_file(folder: Path, marker: Path) -> Path:
    path = folder / "scripted.pt"
    path.write_bytes(scripted_payload(marker))
    return path


def assert_torchscript_refusal(line: str, path: Path) -> None:
    assert len(line.splitlines()) == 1, line
    assert_names(line, "refused to load", str(path), "TorchScript archive")
    assert "trust" not in line, line


def test_torchscript_to_the_calculator_even_trusted(tmp_path, payload_marker):
    path = torchscript_file(tmp_path, payload_marker)
    for trusted in (False, True):
        with pytest.raises(CheckpointError) as raised:
            LEIGNNCalculator(path, trust_checkpoint=trusted)
        assert_torchscript_refusal(str(raised.value), path)
    assert not payload_marker.exists()


def test_torchscript_to_the_hydra_conversion(tmp_path, payload_marker):
    path = torchscript_file(tmp_path, payload_marker)
    with pytest.raises(CheckpointError) as raised:
        convert_checkpoint(path, tmp_path / "hydra.pt")
    assert_torchscript_refusal(str(raised.value), path)
    assert not payload_marker.exists()
    assert not (tmp_path / "hydra.pt").exists()


def test_torchscript_normalizer_file_named_in_a_config(tmp_path, payload_marker):
    """What fairchem's trainer does with normalizer.file, inside the guard every rank of main.py runs in."""
    from fairchem.core.modules.normalization.normalizer import create_normalizer

    path = torchscript_file(tmp_path, payload_marker)
    with safe_loading(), pytest.raises(CheckpointError) as raised:
        create_normalizer(file=path)
    assert_torchscript_refusal(str(raised.value), path)
    assert not payload_marker.exists()


def test_torchscript_to_md_run(tmp_path, payload_marker, bad_input):
    path = torchscript_file(tmp_path, payload_marker)
    proc = run("-m", "leignn_plugin.md.cli", "run", "--checkpoint", str(path), "--structure", str(FRAMES),
               "--index", "0", "--steps", "2", "--out", str(tmp_path / "md"), "--no-progress")
    line = error_line(proc.returncode, proc.stderr, "leignn-md")
    assert_torchscript_refusal(line, path)
    assert not payload_marker.exists()
    assert not (tmp_path / "md").exists()
    bad_input("TorchScript archive given to leignn-md as a checkpoint",
              "leignn-md run --checkpoint scripted.pt ... --out RUN", line)


def test_torchscript_to_main_predict(demo_data, tmp_path, payload_marker, bad_input):
    path = torchscript_file(tmp_path, payload_marker)
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(path))
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_torchscript_refusal(line, path)
    assert not payload_marker.exists()
    assert snapshot(run_dir) == before
    bad_input("TorchScript archive as --checkpoint", "main.py --mode predict ... --checkpoint scripted.pt", line)


class ScriptedTensor:
    """Pickled, it asks ``torch.storage._load_from_bytes`` to load ``data``, as a pickled tensor does."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


def test_record_holding_torchscript_bytes(payload_marker):
    with pytest.raises(RecordRefused, match="TorchScript archive"):
        loads(pickle.dumps(ScriptedTensor(scripted_payload(payload_marker))))
    assert not payload_marker.exists()
    tensor = torch.arange(3.0)
    assert torch.equal(loads(pickle.dumps(ScriptedTensor(tensor_bytes(tensor)))), tensor)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()


def test_record_holding_torchscript_bytes_to_inspect(demo_data, tmp_path, payload_marker, bad_input):
    from test_safe_records import crafted_copy

    crafted = crafted_copy(demo_data, tmp_path / "crafted", ScriptedTensor(scripted_payload(payload_marker)))
    proc = run("-m", "leignn_plugin.data", "inspect", str(crafted))
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert_names(line, str(crafted), "record 0", "TorchScript archive", "refused to unpickle")
    assert not payload_marker.exists()
    bad_input("dataset record holding a TorchScript archive (inspect)", "leignn-data inspect DIR", line)


# --- a hydra checkpoint's fine-tuning reference is never read --------------------------------------------


def hydra_checkpoint(folder: Path) -> Path:
    return convert_checkpoint(DEMO_CHECKPOINT, folder / "hydra.pt")


def with_starting_checkpoint(hydra: Path, starting: Path, change=None) -> Path:
    """``hydra`` with ``model.finetune_config.starting_checkpoint: starting`` (and ``change`` applied to
    its model config), as fairchem's fine-tuning writes it."""
    checkpoint = torch.load(hydra, map_location="cpu", weights_only=True)
    checkpoint["config"]["model"]["finetune_config"] = {"starting_checkpoint": str(starting)}
    if change is not None:
        change(checkpoint["config"]["model"])
    return save(checkpoint, hydra.with_name("finetuned.pt"))


def test_finetune_reference_is_never_read(tmp_path, payload_marker):
    """fairchem's HydraModel would fully unpickle the starting checkpoint (then discard it: the config
    gives the backbone and heads, and the state dict every weight)."""
    evil = save({"state_dict": Payload(payload_marker)}, tmp_path / "evil.pt")
    hydra = hydra_checkpoint(tmp_path)
    finetuned = with_starting_checkpoint(hydra, evil)
    atoms = read(FRAMES, index=0)
    atoms.calc = LEIGNNCalculator(finetuned)
    energy = atoms.get_potential_energy()
    check_run_checkpoint(finetuned, torch.load(finetuned, weights_only=True)["config"]["model"])  # main.py's check
    assert not payload_marker.exists()
    atoms.calc = LEIGNNCalculator(hydra)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)


def test_finetune_reference_that_the_model_needs_is_refused(tmp_path, payload_marker):
    evil = save({"state_dict": Payload(payload_marker)}, tmp_path / "evil.pt")
    finetuned = with_starting_checkpoint(hydra_checkpoint(tmp_path), evil, lambda model: model.pop("heads"))
    with pytest.raises(CheckpointError) as raised:
        LEIGNNCalculator(finetuned)
    assert_names(str(raised.value), str(finetuned), "hydra model", "no heads", "not LEIGNN's")
    assert not payload_marker.exists()


# --- model names are matched with the known ones, never imported -----------------------------------------


@pytest.fixture
def evil_module(tmp_path, payload_marker, monkeypatch) -> Iterator[Path]:
    """A folder (on sys.path here, the current folder of the commands) holding ``leignn_evilmod.py``,
    which creates the marker when imported (not imported yet in this process, before or after)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    (folder / "leignn_evilmod.py").write_text(f"from pathlib import Path\nPath({str(payload_marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("leignn_evilmod", None)
    yield folder
    sys.modules.pop("leignn_evilmod", None)


def _evil_model(model: dict) -> None:
    model["name"] = "leignn_evilmod.LEIGNN"


def _evil_backbone(model: dict) -> None:
    model["backbone"]["model"] = "leignn_evilmod.LEIGNNBackbone"


def _evil_head(model: dict) -> None:
    model["heads"]["energy"]["module"] = "leignn_evilmod.LEIGNNEnergyHead"


EVIL_NAMES = {"model": _evil_model, "hydra backbone": _evil_backbone, "hydra head": _evil_head}


@pytest.mark.parametrize("kind", sorted(EVIL_NAMES))
def test_model_names_are_matched_without_importing(kind, tmp_path, evil_module, payload_marker):
    source = DEMO_CHECKPOINT if kind == "model" else hydra_checkpoint(tmp_path)
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    EVIL_NAMES[kind](checkpoint["config"]["model"])
    path = save(checkpoint, tmp_path / "named.pt")
    with pytest.raises(CheckpointError) as raised:
        LEIGNNCalculator(path)
    assert_names(str(raised.value), str(path), "leignn_evilmod.", "not LEIGNN")
    assert not payload_marker.exists()


def test_model_name_to_md_run_from_the_module_folder(tmp_path, evil_module, payload_marker, bad_input):
    checkpoint = demo_checkpoint()
    _evil_model(checkpoint["config"]["model"])
    path = save(checkpoint, tmp_path / "named.pt")
    proc = subprocess.run([sys.executable, "-m", "leignn_plugin.md.cli", "run", "--checkpoint", str(path),
                           "--structure", str(FRAMES), "--index", "0", "--steps", "2", "--out", str(tmp_path / "md"),
                           "--no-progress"], capture_output=True, text=True, cwd=evil_module, timeout=600)
    line = error_line(proc.returncode, proc.stderr, "leignn-md")
    assert_names(line, str(path), "'leignn_evilmod.LEIGNN' model, not LEIGNN")
    assert not payload_marker.exists()
    bad_input("checkpoint naming a model in a module of the current folder",
              "leignn-md run --checkpoint named.pt ... (from the folder of leignn_evilmod.py)", line)


def test_legacy_and_registered_names_still_load(tmp_path):
    atoms = read(FRAMES, index=0)
    atoms.calc = LEIGNNCalculator(DEMO_CHECKPOINT)
    expected = atoms.get_potential_energy()
    for name in ("leignn_plugin.models.leignn.LEIGNN", "leignn_plugin.models.LEIGNN",
                 "leignn_plugin.fairchem1.models.LEIGNN"):
        checkpoint = demo_checkpoint()
        checkpoint["config"]["model"]["name"] = name
        atoms.calc = LEIGNNCalculator(save(checkpoint, tmp_path / "named.pt"))
        assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-6), name
    checkpoint = torch.load(hydra_checkpoint(tmp_path), map_location="cpu", weights_only=True)
    model = checkpoint["config"]["model"]
    model["backbone"]["model"] = "leignn_plugin.models.backbone.LEIGNNBackbone"
    model["heads"]["energy"]["module"] = "leignn_plugin.models.leignn.LEIGNNEnergyHead"
    model["heads"]["forces"]["module"] = "leignn_plugin.fairchem1.models.LEIGNNDirectForceHead"
    atoms.calc = LEIGNNCalculator(save(checkpoint, tmp_path / "legacy_hydra.pt"))
    assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-5)


# --- malformed normalizers and element references: one line naming the file and the key -------------------


MALFORMED = {
    "normalizers that are a string": (lambda c: c.update(normalizers="energy"), "its 'normalizers' entry is a str"),
    "a normalizer without its mean": (lambda c: c["normalizers"]["energy"].pop("mean"),
                                      "normalizers['energy']['mean'] is missing"),
    "a normalizer that is not a number": (lambda c: c["normalizers"]["forces"].update(rmsd="x"),
                                          "normalizers['forces']['rmsd'] is a str, not one number"),
    "element references that are a string": (lambda c: c.update(elementrefs={"energy": "refs"}),
                                             "elementrefs['energy'] is a str"),
}


def malformed(kind: str, folder: Path) -> Path:
    checkpoint = demo_checkpoint()
    MALFORMED[kind][0](checkpoint)
    return save(checkpoint, folder / "malformed.pt")


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_normalizers_to_the_calculator(kind, tmp_path):
    path = malformed(kind, tmp_path)
    with pytest.raises(CheckpointError) as raised:
        LEIGNNCalculator(path)
    assert len(str(raised.value).splitlines()) == 1
    assert_names(str(raised.value), str(path), MALFORMED[kind][1])


def test_malformed_normalizers_to_md_run(tmp_path, bad_input):
    path = malformed("a normalizer without its mean", tmp_path)
    proc = run("-m", "leignn_plugin.md.cli", "run", "--checkpoint", str(path), "--structure", str(FRAMES),
               "--index", "0", "--steps", "2", "--out", str(tmp_path / "md"), "--no-progress")
    line = error_line(proc.returncode, proc.stderr, "leignn-md")
    assert_names(line, str(path), "normalizers['energy']['mean'] is missing")
    bad_input("checkpoint with a malformed normalizer (no mean) given to leignn-md",
              "leignn-md run --checkpoint malformed.pt ... --out RUN", line)


def test_malformed_normalizers_to_main_predict(demo_data, tmp_path, bad_input):
    path = malformed("normalizers that are a string", tmp_path)
    run_dir = tmp_path / "runs"
    before = earlier_run(run_dir)
    proc = main_py("predict", demo_data, run_dir, "--checkpoint", str(path))
    line = error_line(proc.returncode, proc.stderr, "leignn")
    assert_names(line, str(path), "its 'normalizers' entry is a str")
    assert snapshot(run_dir) == before
    bad_input("checkpoint whose normalizers are a string", "main.py --mode predict ... --checkpoint malformed.pt", line)


# --- the hydra conversion never writes over its input, nor over an output without --overwrite --------------


def test_hydra_conversion_refuses_its_own_input_as_output(tmp_path, monkeypatch, bad_input):
    src = save(demo_checkpoint(), tmp_path / "c.pt")
    (tmp_path / "link.pt").symlink_to(src)
    os.link(src, tmp_path / "hard.pt")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    for dst in (tmp_path / "link.pt", tmp_path / "hard.pt", Path("c.pt"), Path("..") / tmp_path.name / "c.pt"):
        with pytest.raises(UsageError, match="is the input"):
            convert_checkpoint(src, dst, overwrite=True)
    proc = run("-m", HYDRA, str(src), str(src), "--overwrite")
    line = error_line(proc.returncode, proc.stderr, "leignn-to-hydra")
    assert_names(line, str(src), "is the input")
    assert snapshot(tmp_path) == before
    bad_input("the hydra conversion's own input as its output", f"python -m {HYDRA} c.pt c.pt --overwrite", line)


def test_hydra_conversion_refuses_an_existing_output_without_overwrite(tmp_path, bad_input):
    out = tmp_path / "hydra.pt"
    out.write_bytes(b"an earlier hydra checkpoint")
    proc = run("-m", HYDRA, str(DEMO_CHECKPOINT), str(out))
    line = error_line(proc.returncode, proc.stderr, "leignn-to-hydra")
    assert_names(line, str(out), "already exists", "--overwrite")
    assert out.read_bytes() == b"an earlier hydra checkpoint"
    bad_input("an existing hydra conversion output without --overwrite", f"python -m {HYDRA} CKPT hydra.pt", line)
    convert_checkpoint(DEMO_CHECKPOINT, out, overwrite=True)
    assert read_checkpoint(out)["config"]["model"]["name"] == "hydra"
