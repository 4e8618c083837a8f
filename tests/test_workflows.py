"""End to end through main.py on the demo data: train -> checkpoint -> validate -> predict ->
submission -> run-relaxations, plus resuming a run and fine-tuning into fairchem's hydra model, and
``make demo``'s summary, ending block and plots."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from leignn_plugin.data.demo.build import DATA_VERSION
from leignn_plugin.workflows import demo as demo_module
from leignn_plugin.workflows.demo import RELAX_CONFIG, S2EF_CONFIG, data_overrides
from leignn_plugin.workflows.demo_report import comparison_line, stale_data
from leignn_plugin.workflows.evaluation import (
    LARGE_FORCE,
    aligned_predictions,
    score_predictions,
    tensorboard_scalars,
    training_curve,
)
from leignn_plugin.workflows.fairchem_runs import run_main
from leignn_plugin.workflows.submission import main as submission_main

# A small conservative model (gradient forces), quick to train on the small demo set.
TINY = ["--model.hidden_channels=32", "--model.num_layers=2", "--model.num_rbf=16", "--model.direct_forces=False",
        "--optim.batch_size=8", "--optim.lr_initial=3e-3"]


@pytest.fixture(scope="module")
def chain(demo_data, tmp_path_factory):
    """Train for 3 epochs, then validate and predict twice from the best checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    overrides = [*data_overrides(demo_data), *TINY, "--optim.max_epochs=3"]
    train = run_main("train", S2EF_CONFIG, runs, "t-train", overrides, extra=["--print-every", "4"], echo=False)
    checkpoint = train.checkpoint_dir / "best_checkpoint.pt"
    validate = run_main("validate", S2EF_CONFIG, runs, "t-val", overrides, checkpoint=checkpoint, echo=False)
    predictions = [
        run_main("predict", S2EF_CONFIG, runs, f"t-pred{k}", overrides, checkpoint=checkpoint, echo=False)
        .results_dir / "s2ef_predictions.npz"
        for k in range(2)
    ]
    return {"runs": runs, "train": train, "checkpoint": checkpoint, "validate": validate,
            "predictions": predictions, "overrides": overrides, "data": demo_data}


def test_training_lowers_force_mae(chain):
    assert training_curve(chain["train"].log), "no training metrics in the log"
    scalars = tensorboard_scalars(chain["train"].tensorboard_dir)
    train = [v for _, v in scalars["train/forces_mae"]]
    quarter = len(train) // 4
    first, last = np.mean(train[:quarter]), np.mean(train[-quarter:])
    assert last < 0.8 * first, f"training force MAE went {first:.3f} -> {last:.3f}"
    val = [v for _, v in scalars["val/forces_mae"]]
    assert len(val) == 3 and val[-1] < val[0], f"validation force MAE per epoch: {val}"


def test_checkpoint_holds_training_state(chain):
    ckpt = torch.load(chain["train"].checkpoint_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    for key in ("state_dict", "optimizer", "scheduler", "ema", "normalizers", "config", "step", "epoch"):
        assert key in ckpt, key
    assert ckpt["config"]["model"]["name"] == "leignn"
    assert ckpt["step"] > 0


def test_validate_logs_metrics(chain):
    scalars = tensorboard_scalars(chain["validate"].tensorboard_dir)
    mae = scalars["val/forces_mae"][-1][1]
    assert np.isfinite(mae) and 0 < mae < 5


def test_predict_is_reproducible_and_scored(chain):
    first, second = (np.load(p, allow_pickle=True) for p in chain["predictions"])
    assert sorted(first.files) == ["chunk_idx", "energy", "forces", "ids"]
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
    scores = score_predictions(chain["predictions"][0], chain["data"] / "oc20_s2ef" / "test")
    assert scores["frames"] == len(first["ids"])
    assert np.isfinite(scores["energy_mae"]) and scores["forces_mae"] < 1.0
    pairs = aligned_predictions(chain["predictions"][0], chain["data"] / "oc20_s2ef" / "test")
    large = np.abs(pairs["ref_forces"]) > LARGE_FORCE  # [free atoms, 3]
    assert scores["force_components_above_1"] == int(large.sum()) > 0
    assert scores["forces_mae_above_1"] == pytest.approx(np.abs(pairs["forces"] - pairs["ref_forces"])[large].mean())


def submission_args(predictions, data) -> list[str]:
    """The same predictions file (and the demo test split) for all four OC20 splits."""
    args = []
    for flag in ("id", "ood-ads", "ood-cat", "ood-both"):
        args += [f"--{flag}", str(predictions), f"--{flag}-lmdb", str(data / "oc20_s2ef" / "test")]
    return args


def test_submission_file(chain, tmp_path):
    pred = chain["predictions"][0]
    out = tmp_path / "submission.npz"
    assert submission_main([*submission_args(pred, chain["data"]), "--out", str(out)]) == 0
    merged = np.load(out, allow_pickle=True)
    original = np.load(pred, allow_pickle=True)
    for split in ("id", "ood_ads", "ood_cat", "ood_both"):
        for key in ("ids", "energy", "forces", "chunk_idx"):
            np.testing.assert_array_equal(merged[f"{split}_{key}"], original[key])


def test_submission_refuses_incomplete_predictions(chain, tmp_path, capsys):
    original = dict(np.load(chain["predictions"][0], allow_pickle=True))
    partial = tmp_path / "partial.npz"
    # drop the last frame: ids, energies, forces and chunk boundaries all shrink consistently
    cut = int(original["chunk_idx"][-1])
    np.savez(partial, ids=original["ids"][:-1], energy=original["energy"][:-1],
             forces=original["forces"][:cut], chunk_idx=original["chunk_idx"][:-1])
    out = tmp_path / "submission.npz"
    assert submission_main([*submission_args(partial, chain["data"]), "--out", str(out)]) == 2
    assert "not predicted" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["partial.npz"]  # no output, no temporary file of any name


def test_relaxations_run_and_log_metrics(chain):
    """fairchem's LBFGS driven by the checkpoint: metrics, trajectories, constraints, relaxed positions.

    Whether each relaxation lowers the energy is measured by ``make demo`` on its trained model, not
    asserted here: this chain's model is trained for three epochs on a tiny set and nearly flat around
    the demo's near-relaxed structures (max force ~5 meV/Å), where LBFGS without a line search may
    step uphill by a few meV.
    """
    from ase.io import read

    traj_dir = chain["runs"] / "trajectories"
    relax = run_main("run-relaxations", RELAX_CONFIG, chain["runs"], "t-relax",
                     [*chain["overrides"], f"--task.relax_opt.traj_dir={traj_dir}",
                      "--task.relaxation_fmax=0.001", "--task.relaxation_steps=25"],
                     checkpoint=chain["checkpoint"], echo=False)
    scalars = tensorboard_scalars(relax.tensorboard_dir)
    for key in ("val/is2re_energy_mae", "val/is2rs_positions_mae"):
        assert np.isfinite(scalars[key][-1][1]), key
    trajectories = sorted(traj_dir.glob("*.traj"))
    assert trajectories, "no relaxation trajectories written"
    for path in trajectories:
        frames = read(path, index=":")
        assert len(frames) > 1, f"relaxation {path.stem} took no step"
        fixed = frames[0].constraints[0].get_indices()
        moved = np.linalg.norm(frames[-1].positions - frames[0].positions, axis=1)  # [N]
        assert len(fixed) and moved[fixed].max() == 0.0, f"fixed atoms moved in relaxation {path.stem}"
        free = np.setdiff1d(np.arange(len(moved)), fixed)
        assert moved[free].max() > 1e-4, f"no free atom moved in relaxation {path.stem}"
        assert np.isfinite(frames[-1].get_potential_energy())
    relaxed = np.load(relax.results_dir / "relaxed_positions.npz", allow_pickle=True)
    assert sorted(relaxed["ids"].tolist()) == sorted(path.stem for path in trajectories)


def test_resume_continues_from_checkpoint(chain):
    resumed = run_main("train", S2EF_CONFIG, chain["runs"], "t-resume",
                       [*chain["overrides"], "--optim.max_epochs=4"],
                       checkpoint=chain["train"].checkpoint_dir / "checkpoint.pt", echo=False)
    before = torch.load(chain["train"].checkpoint_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    after = torch.load(resumed.checkpoint_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    steps_per_epoch = before["step"] // 3
    assert after["step"] == before["step"] + steps_per_epoch
    assert after["epoch"] == pytest.approx(4.0)


def test_finetune_into_hydra(chain, tmp_path):
    """A leignn checkpoint becomes a hydra one with identical predictions, and fairchem fine-tunes it."""
    from fairchem.core.common.utils import load_model_and_weights_from_checkpoint
    from fairchem.core.datasets import LmdbDataset
    from fairchem.core.datasets.lmdb_dataset import data_list_collater

    source = chain["train"].checkpoint_dir / "checkpoint.pt"
    hydra_ckpt = tmp_path / "hydra.pt"
    # the README's command
    done = subprocess.run([sys.executable, "-m", "leignn_plugin.fairchem1.hydra_conversion", str(source),
                           str(hydra_ckpt), "--raw-weights"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"hydra checkpoint written to {hydra_ckpt}", done.stderr
    hydra = load_model_and_weights_from_checkpoint(str(hydra_ckpt)).eval()
    single_ckpt = torch.load(source, map_location="cpu", weights_only=False)
    options = {k: v for k, v in single_ckpt["config"]["model"].items() if k != "name"}
    from leignn_plugin import LEIGNN

    single = LEIGNN(**options).eval()
    single.load_state_dict({k.removeprefix("module."): v for k, v in single_ckpt["state_dict"].items()})
    dataset = LmdbDataset({"src": str(chain["data"] / "oc20_s2ef" / "val")})
    batch = data_list_collater([dataset[0], dataset[1]], otf_graph=True)
    ref, out = single(batch), hydra(batch)
    torch.testing.assert_close(out["energy"], ref["energy"])
    torch.testing.assert_close(out["forces"], ref["forces"])

    import yaml

    settings = yaml.safe_load(S2EF_CONFIG.read_text())
    settings["model"] = {"name": "hydra", "pass_through_head_outputs": True,
                         "finetune_config": {"starting_checkpoint": str(hydra_ckpt)}}
    config = tmp_path / "finetune.yml"
    config.write_text(yaml.safe_dump(settings))
    run = run_main("train", config, chain["runs"], "t-finetune",
                   [*[o for o in chain["overrides"] if not o.startswith("--model.")], "--optim.max_epochs=1"],
                   echo=False)
    tuned = torch.load(run.checkpoint_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert tuned["config"]["model"]["name"] == "hydra" and tuned["step"] > 0


def test_demo_rebuilds_stale_data_only(tmp_path, monkeypatch, capsys):
    """Demo data of an older data version or another size are rebuilt in place; current ones are reused."""
    calls = []
    monkeypatch.setattr(demo_module.subprocess, "run", lambda command, **_: calls.append(command))
    data = tmp_path / "data"
    data.mkdir()
    assert stale_data(data, "small") == "no demo data there yet"
    demo_module.build_data(data, "small")
    assert "--overwrite" not in calls[-1] and calls[-1][-4:] == ["--size", "small", "--output-format", "lmdb"]
    (data / "manifest.json").write_text(json.dumps({"size": "small", "layout_version": 1}))
    demo_module.build_data(data, "small")
    assert calls[-1][-1] == "--overwrite" and "data version 1, not 2" in capsys.readouterr().out
    (data / "manifest.json").write_text(json.dumps({"size": "default", "data_version": DATA_VERSION}))
    assert stale_data(data, "small") == "it holds the 'default' size, not 'small'"
    (data / "manifest.json").write_text(json.dumps({"size": "small", "data_version": DATA_VERSION}))
    demo_module.build_data(data, "small")
    assert len(calls) == 2 and "using the demo data in" in capsys.readouterr().out


def test_demo_summaries_compare_on_the_same_frames(tmp_path):
    mine = {"data_version": 2, "test": {"energy_mae": 0.1, "forces_mae": 0.05, "forces_mae_above_1": 0.3, "frames": 9}}
    other = {"data_version": 2, "test": {"energy_mae": 0.2, "forces_mae": 0.04, "forces_mae_above_1": None,
                                         "frames": 9}}
    path = tmp_path / "summary_fairchem2.json"
    assert comparison_line(mine, other, "fairchem 2.x demo", path) == (
        f"  fairchem 2.x demo: test energy MAE 0.200 eV, force MAE 0.040 eV/Å ({path})")
    assert comparison_line(mine, None, "fairchem 2.x demo", path) is None
    older = {**other, "data_version": 1}
    assert "other test frames" in comparison_line(mine, older, "fairchem 2.x demo", path)


@pytest.mark.slow
def test_demo_runs_twice_in_one_folder(demo_data, tmp_path, capsys):
    """``make demo`` again in the same place does the whole job again: fresh training, predictions and
    relaxations (fairchem skips systems whose trajectories exist, so a reused folder relaxed nothing),
    and ends with its block: test errors with those of the large force components, plots, summary."""
    import shutil

    from leignn_plugin.workflows.demo import main, run_demo

    shutil.copytree(demo_data, tmp_path / "data")
    first = run_demo(tmp_path, size="small", epochs=1)
    assert main(["--out", str(tmp_path), "--size", "small", "--epochs", "1"]) == 0
    second = json.loads((tmp_path / "summary.json").read_text())
    assert second["relaxations"] == first["relaxations"] > 0
    assert second["checkpoint"] != first["checkpoint"] and second["predictions"] != first["predictions"]
    assert sorted(p.name for p in (tmp_path / "runs").glob("relaxations*")) == ["relaxations", "relaxations-2"]
    for key in ("energy_mae", "forces_mae", "forces_mae_above_1", "force_components_above_1", "frames"):
        assert key in second["test"], key
    assert second["data_version"] == DATA_VERSION and second["seconds"] > 0
    assert [p.rsplit("/", 1)[-1] for p in second["plots"]] == ["parity_test.png", "training_force_mae.png"]
    assert all((tmp_path / "plots" / name).stat().st_size > 1000 for name in ("parity_test.png",
                                                                              "training_force_mae.png"))
    block = capsys.readouterr().out.split("LEIGNN demo finished")[1]
    assert f"  test energy MAE {second['test']['energy_mae']:.3f} eV" in block
    assert f"(components above 1 eV/Å: {second['test']['forces_mae_above_1']:.3f} eV/Å)" in block
