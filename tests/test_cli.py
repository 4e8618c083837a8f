"""main.py's one-line errors for the usual mistakes, and the configs in configs/ all build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from leignn_plugin.workflows.fairchem_runs import MAIN_PY, REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yml"))


def run_main_py(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAIN_PY), *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=env, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("leignn: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_missing_config_file():
    line = one_error_line(run_main_py("--mode", "train", "--config-yml", "configs/nope.yml", "--cpu"))
    assert "config file not found: configs/nope.yml" in line


def test_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("model:\n  name: leignn\n   hidden_channels: [1\n")
    line = one_error_line(run_main_py("--mode", "train", "--config-yml", str(bad), "--cpu"))
    assert "is not valid YAML at line" in line


def test_unknown_model_name(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "configs/demo/leignn_s2ef.yml").read_text())
    config["model"]["name"] = "leignnn"
    path = tmp_path / "typo.yml"
    path.write_text(yaml.safe_dump(config))
    line = one_error_line(run_main_py("--mode", "train", "--config-yml", str(path), "--cpu"))
    assert "unknown model 'leignnn'" in line and "leignn_backbone" in line


def test_missing_checkpoint():
    line = one_error_line(run_main_py("--mode", "validate", "--config-yml", "configs/demo/leignn_s2ef.yml", "--cpu",
                                      "--checkpoint", "nowhere/checkpoint.pt"))
    assert "checkpoint not found: nowhere/checkpoint.pt" in line


def test_broken_install(tmp_path):
    """A missing compiled dependency is named with the fix, not a 60-line traceback."""
    shadow = tmp_path / "torch_scatter"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('undefined symbol: _ZN5torch', name='torch_scatter')\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    line = one_error_line(run_main_py("--mode", "train", "--config-yml", "configs/demo/leignn_s2ef.yml", env=env))
    assert "broken install" in line and "torch_scatter" in line and "make install" in line


def interrupting_fairchem(folder: Path) -> dict:
    """An environment whose ``import fairchem`` raises KeyboardInterrupt: Ctrl-C during that import."""
    (folder / "fairchem").mkdir()
    (folder / "fairchem" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_ctrl_c_during_start_up(tmp_path):
    """Before the model or trainer exists (fairchem's import takes seconds): one line, exit 130."""
    env = interrupting_fairchem(tmp_path)
    md = Path(sys.executable).parent / "leignn-md"
    for prog, proc in (
        ("leignn", run_main_py("--mode", "train", "--config-yml", "configs/demo/leignn_s2ef.yml", env=env)),
        ("leignn-md", subprocess.run([str(md), "analyze", str(tmp_path)], capture_output=True, text=True, env=env,
                                     timeout=300)),
    ):
        assert proc.returncode == 130, proc.stderr[-2000:]
        assert proc.stderr.splitlines() == [f"{prog}: interrupted during start-up"], proc.stderr[-2000:]


def test_ctrl_c_while_checking_the_config(monkeypatch, capsys):
    from leignn_plugin.fairchem1 import cli

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_checked_config", interrupted)
    assert cli.main(["--mode", "train", "--config-yml", "configs/demo/leignn_s2ef.yml", "--cpu"]) == 130
    assert capsys.readouterr().err.splitlines() == ["leignn: interrupted"]


def test_ranks_get_the_import_filters():
    """The ranks main.py starts import fairchem again: its noise is filtered there, other warnings are not."""
    from leignn_plugin.console import rank_warnings

    env = {**os.environ, "PYTHONWARNINGS": rank_warnings(os.environ.get("PYTHONWARNINGS"))}
    code = ("import warnings; import fairchem.core.models.escn.so3, fairchem.core.models.equiformer_v2.wigner; "
            "warnings.warn('a warning of its own', FutureWarning)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "torch.load" not in proc.stderr, proc.stderr
    assert "FutureWarning: a warning of its own" in proc.stderr


def test_fairchem_import_noise_is_filtered():
    """A refused config is the only line: fairchem's import-time torch.load FutureWarnings are not shown."""
    proc = run_main_py("--mode", "train", "--config-yml", "configs/demo/leignn_s2ef.yml", "--cpu",
                       "--optim.max_epoch=1")
    assert proc.stderr.splitlines() == [one_error_line(proc)], proc.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO_ROOT / "configs")) for p in CONFIGS])
def test_config_builds_model_and_datasets(path, demo_data):
    """Every config loads through fairchem's config builder; its model runs on its datasets' samples,
    with the dataset paths pointed at the demo data."""
    from argparse import Namespace

    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import build_config
    from fairchem.core.datasets import LmdbDataset
    from fairchem.core.datasets.lmdb_dataset import data_list_collater

    args = Namespace(config_yml=path, mode="train", identifier="", timestamp_id=None, seed=0, debug=False,
                     run_dir="./", print_every=10, amp=False, checkpoint=None, cpu=True, submit=False, summit=False,
                     num_nodes=1, num_gpus=1, gp_gpus=None)
    config = build_config(args, [])
    if "model" not in config or "dataset" not in config:
        # a fragment: base settings included by full configs, or an evaluation split given on the
        # command line (its header says how); either way it loads and points at LMDB directories
        users = [c for c in CONFIGS if path.name in c.read_text() and c != path]
        assert users or "--mode validate" in path.read_text(), f"{path} is not used by any config"
        for split in config.get("dataset", {}).values():
            assert "src" in split
        return
    model_config = dict(config["model"])
    model = registry.get_model_class(model_config.pop("name"))(**model_config).eval()

    periodic = model_config.get("use_pbc", True)
    demo = demo_data / ("oc20_s2ef" if periodic else "molecules")
    splits = {name: cfg for name, cfg in config["dataset"].items() if isinstance(cfg, dict)}
    assert "train" in splits
    for name, split in splits.items():
        settings = {**splits["train"], **split} if name != "train" else split
        settings.pop("transforms", None)
        settings.pop("first_n", None)
        src = demo_data / "oc20_is2re" / "val" if name == "relax" else demo / "val"
        dataset = LmdbDataset({**settings, "src": str(src)})
        sample = dataset[0]
        del dataset  # closes the LMDB environments (fairchem opens each path once per process)
        if name == "relax":
            assert hasattr(sample, "energy_relaxed") and hasattr(sample, "pos_relaxed")
            continue
        assert hasattr(sample, "energy") and hasattr(sample, "forces"), f"{name}: key_mapping does not give energy/forces"
        with torch.no_grad():
            out = model(data_list_collater([sample], otf_graph=True))
        assert out["energy"].shape == (1,) and out["forces"].shape == sample.forces.shape
        assert torch.isfinite(out["forces"]).all()
    for key in ("loss_functions", "outputs", "evaluation_metrics", "optim"):
        assert key in config, f"{path.name} lacks {key}"


def test_oc20_config_has_the_papers_settings():
    from argparse import Namespace

    from fairchem.core.common.utils import build_config

    args = Namespace(config_yml=Path(REPO_ROOT / "configs/oc20/leignn.yml"), mode="train", identifier="",
                     timestamp_id=None, seed=0, debug=False, run_dir="./", print_every=10, amp=False,
                     checkpoint=None, cpu=True, submit=False, summit=False, num_nodes=1, num_gpus=1, gp_gpus=None)
    config = build_config(args, [])
    model, optim = config["model"], config["optim"]
    assert (model["hidden_channels"], model["num_layers"], model["num_rbf"], model["cutoff"],
            model["max_neighbors"]) == (512, 4, 128, 6.0, 20)
    assert optim["optimizer"] == "AdamW" and optim["optimizer_params"]["amsgrad"] is True
    assert (optim["lr_initial"], optim["factor"], optim["patience"], optim["ema_decay"],
            optim["clip_grad_norm"], optim["batch_size"]) == (2e-4, 0.8, 5, 0.999, 50, 32)
    coefficients = {next(iter(loss)): next(iter(loss.values()))["coefficient"] for loss in config["loss_functions"]}
    assert coefficients == {"energy": 1, "forces": 50}


def test_oc20_config_trains_on_demo_data(demo_data, tmp_path):
    """The README's OC20 command, unchanged but for the data paths and one epoch."""
    s2ef = demo_data / "oc20_s2ef"
    proc = run_main_py("--mode", "train", "--config-yml", "configs/oc20/leignn.yml", "--cpu",
                       f"--dataset.train.src={s2ef / 'train'}", f"--dataset.val.src={s2ef / 'val'}",
                       "--optim.max_epochs=1", "--optim.eval_every=2", "--optim.num_workers=0",
                       "--run-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("checkpoints/*/checkpoint.pt")), proc.stderr[-3000:]
    assert "Loaded LEIGNN with" in proc.stdout + proc.stderr
