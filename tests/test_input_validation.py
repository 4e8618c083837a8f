"""Validation before work starts: model options, config keys, overrides and datasets each get one line
naming the key, from ``main.py`` (and ``leignn-data inspect``), before any rank starts or any run
folder is made; truncated LMDB files are caught from their headers, never by a SIGBUS."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml
from conftest import error_line

from leignn_plugin.core.options import REPRESENTATION_OPTIONS, OptionError
from leignn_plugin.core.representation import LEIGNNRepresentation
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.lmdb_check import check_lmdb_source, read_header
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1 import LEIGNN, LEIGNNBackbone, config_keys
from leignn_plugin.fairchem1.config_check import check_config
from leignn_plugin.fairchem1.models import BACKBONE_OPTIONS
from leignn_plugin.workflows.fairchem_runs import MAIN_PY, REPO_ROOT

DEMO_CONFIG = "configs/demo/leignn_s2ef.yml"
CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yml"))


def run_main_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAIN_PY), *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300)


def run_data_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leignn_plugin.data", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def demo_config(tmp_path: Path, **model_changes) -> Path:
    """The demo S2EF config (includes resolved) with ``model`` changed, written to ``tmp_path``."""
    config = yaml.safe_load((REPO_ROOT / DEMO_CONFIG).read_text())
    config["model"].update(model_changes)
    for key in [k for k, v in model_changes.items() if v is None]:
        del config["model"][key]
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def refused(proc: subprocess.CompletedProcess, run_dir: Path) -> str:
    """The error line of a run refused before it started: exit 2, one line, no run folder made."""
    line = error_line(proc.returncode, proc.stderr, "leignn")
    made = [p for p in run_dir.rglob("*")] if run_dir.exists() else []
    assert not made, f"a refused run left {made}"
    return line


def train_with_config(config: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_main_py("--mode", "train", "--config-yml", str(config), "--cpu", "--run-dir", str(run_dir), *extra)


# --- model options -----------------------------------------------------------------------------------


def test_model_option_of_the_wrong_type(tmp_path, bad_input):
    proc = train_with_config(demo_config(tmp_path, hidden_channels="abc"), tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "model.hidden_channels must be an even positive integer, got 'abc'" in line
    bad_input("model option of the wrong type (hidden_channels: \"abc\")",
              "main.py --mode train --config-yml CONFIG", line)


def test_odd_hidden_channels(tmp_path, bad_input):
    proc = train_with_config(demo_config(tmp_path, hidden_channels=63), tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "model.hidden_channels must be an even positive integer, got 63" in line
    bad_input("odd hidden_channels (63)", "main.py --mode train --config-yml CONFIG", line)


def test_out_of_range_option(tmp_path, bad_input):
    proc = train_with_config(demo_config(tmp_path, cutoff=-6.0), tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "model.cutoff must be a positive number, got -6.0" in line
    bad_input("model option out of range (cutoff: -6.0)", "main.py --mode train --config-yml CONFIG", line)


def test_unknown_model_option_suggests_the_closest(tmp_path, bad_input):
    proc = train_with_config(demo_config(tmp_path, num_layers=None, num_layer=3), tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "unknown key model.num_layer; did you mean model.num_layers?" in line
    bad_input("unknown model option (num_layer)", "main.py --mode train --config-yml CONFIG", line)


def test_python_api_gets_the_same_errors():
    cases = [
        (LEIGNN, {"hidden_channels": "abc"}, "hidden_channels must be an even positive integer, got 'abc'"),
        (LEIGNN, {"hidden_channel": 64}, "unknown option hidden_channel; did you mean hidden_channels?"),
        (LEIGNNBackbone, {"graph_method": "kd"}, "graph_method must be one of vesin, fairchem, cell_list, got 'kd'"),
        (LEIGNNRepresentation, {"rbf": "gausian"}, "got 'gausian'; did you mean gaussian?"),
        (LEIGNNRepresentation, {"hidden_channels": 8, "regress_stress": True}, "regress_stress needs conservative"),
    ]
    for cls, options, message in cases:
        with pytest.raises(OptionError) as err:
            cls(**options)
        assert message in str(err.value)
        assert isinstance(err.value, ValueError) and isinstance(err.value, UsageError)


def test_option_rules_are_exactly_the_constructor_parameters():
    """A new option without a rule (or a rule for a removed option) fails here."""
    def parameters(cls) -> set[str]:
        return {name for name, p in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}

    assert set(REPRESENTATION_OPTIONS) == parameters(LEIGNNRepresentation)
    assert set(BACKBONE_OPTIONS) == parameters(LEIGNNBackbone)


def refusal(config: dict) -> str:
    """The one-line refusal of ``config`` by main.py's check."""
    with pytest.raises(UsageError) as err:
        check_config(config, [], Path("x.yml"))
    return str(err.value)


def hydra_config(direct_forces: bool, heads: dict) -> dict:
    return {"model": {"name": "hydra", "backbone": {"model": "leignn_backbone", "hidden_channels": 16,
                                                     "direct_forces": direct_forces}, "heads": heads}}


def test_hydra_backbone_and_heads_are_checked():
    config = hydra_config(True, {"energy": {"module": "leignn_energy_head"}})
    config["model"]["backbone"]["num_rbf"] = 0
    assert "model.backbone.num_rbf must be a positive integer, got 0" in refusal(config)
    config = hydra_config(False, {"forces": {"module": "leignn_force_head"}})
    assert "model.heads.forces: leignn_force_head needs a backbone with regress_forces: true and direct_forces: true" in refusal(config)
    config = hydra_config(True, {"energy": {"module": "leignn_energy_head", "hidden": 3}})
    assert "unknown key model.heads.energy.hidden" in refusal(config)
    config = hydra_config(True, {"energy": {"module": "leignn_energy_head"}})
    config["model"]["backbone"]["cutof"] = 5.0
    assert "unknown key model.backbone.cutof; did you mean model.backbone.cutoff" in refusal(config)
    config = hydra_config(False, {"energy": {"module": "leignn_conservative_head"}})
    config["model"]["pass_through_head_outputs"] = True
    check_config(config, [], Path("x.yml"))


def test_dotted_path_to_leignn_is_checked():
    config = {"model": {"name": "leignn_plugin.fairchem1.models.LEIGNN", "hidden_channels": 7}}
    assert "model.hidden_channels must be an even positive integer, got 7" in refusal(config)


# --- config keys and overrides -------------------------------------------------------------------------


def test_misspelt_override_suggests_the_closest(tmp_path, bad_input):
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run", "--optim.max_epoch=1")
    line = refused(proc, tmp_path / "run")
    assert line == ("leignn: error: unknown key optim.max_epoch in --optim.max_epoch=1; "
                    "did you mean optim.max_epochs?")
    bad_input("misspelt override", f"main.py --mode train --config-yml {DEMO_CONFIG} --optim.max_epoch=1", line)


def test_unknown_key_in_the_yaml(tmp_path, bad_input):
    config = yaml.safe_load((REPO_ROOT / DEMO_CONFIG).read_text())
    config["optim"]["eval_evry"] = 100
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    proc = train_with_config(path, tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "unknown key optim.eval_evry; did you mean optim.eval_every?" in line
    bad_input("unknown key in the config file (optim.eval_evry)", "main.py --mode train --config-yml CONFIG", line)


def test_keys_in_the_wrong_section_and_unknown_splits():
    base = yaml.safe_load((REPO_ROOT / DEMO_CONFIG).read_text())
    config = {**base, "optim": {**base["optim"], "relaxation_steps": 5}}
    assert "unknown key optim.relaxation_steps; did you mean task.relaxation_steps" in refusal(config)
    config = {**base, "dataset": {**base["dataset"], "vall": {"src": "x"}}}
    assert "unknown key dataset.vall; did you mean dataset.val" in refusal(config)
    config = {**base, "optim": {**base["optim"], "scheduler": "ReduceLROnPlateu"}}
    assert "got 'ReduceLROnPlateu'; did you mean ReduceLROnPlateau?" in refusal(config)


def build(path: Path, overrides: list[str] | None = None) -> dict:
    from fairchem.core.common.utils import build_config

    args = Namespace(config_yml=path, mode="train", identifier="", timestamp_id=None, seed=0, debug=False,
                     run_dir="./", print_every=10, amp=False, checkpoint=None, cpu=True, submit=False, summit=False,
                     num_nodes=1, num_gpus=1, gp_gpus=None)
    return build_config(args, overrides or [])


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO_ROOT / "configs")) for p in CONFIGS])
def test_every_config_passes_the_checks(path):
    check_config(build(path), [], path)


def test_readme_overrides_are_known():
    """The overrides the README and the tests use are keys fairchem reads."""
    overrides = ["--optim.max_epochs=1", "--optim.eval_every=2", "--optim.num_workers=0", "--dataset.val.src=x",
                 "--dataset.train.src=x", "--dataset.test.src=x", "--dataset.relax.src=x", "--task.relaxation_steps=2",
                 "--optim.batch_size=4", "--model.hidden_channels=32", "--model.graph_method=fairchem"]
    path = REPO_ROOT / "configs/demo/leignn_relax.yml"
    check_config(build(path, overrides), overrides, path)


# --- the curated key lists cannot fall behind fairchem -----------------------------------------------------

FAIRCHEM = Path(__import__("fairchem.core").core.__file__).parent


def reads(text: str, expr: str) -> set[str]:
    """Keys read from the dict ``expr`` in ``text``: ``expr["k"]``, ``expr.get("k"`` and ``"k" in expr``."""
    keys = {a or b for a, b in re.findall(rf"{expr}\s*(?:\.get\(\s*\"(\w+)\"|\[\s*\"(\w+)\"\s*\])", text)}
    return keys | set(re.findall(rf"\"(\w+)\"\s+(?:not\s+)?in\s+(?:[\w.]*\.)?{expr}(?![\w\[.])", text))


def source_of(path: Path, name: str) -> str:
    """The source of the function or class ``name`` in ``path``."""
    import ast

    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(text, node)
    raise AssertionError(f"{name} is no longer in {path}: update this scan")


def sources(*patterns: str, root: Path = FAIRCHEM) -> str:
    files = sorted(p for pattern in patterns for p in root.glob(pattern))
    assert files, patterns
    return "\n".join(p.read_text() for p in files)


def section(name: str) -> str:
    return rf"config(?:\[\s*\"{name}\"\s*\]|\.get\(\s*\"{name}\"\s*,\s*\{{\}}\s*\))"


def test_curated_keys_cover_what_fairchem_reads():
    """Scan the installed fairchem 1.10 for the keys it reads from each section; every one must be listed
    in leignn_plugin/fairchem1/config_keys.py, or main.py would refuse a key fairchem uses."""
    host = sources("trainers/*.py", "tasks/*.py", "common/utils.py", "_cli.py", "common/logger.py")
    utils = FAIRCHEM / "common/utils.py"
    found = {
        "OPTIM": reads(host, section("optim"))
        | reads(source_of(FAIRCHEM / "modules/scheduler.py", "LRScheduler"), r"self\.config")
        | reads(source_of(utils, "warmup_lr_lambda"), "optim_config"),
        "TASK": reads(host, section("task")),
        "LOGGER": reads(host, section("logger")),
        "DATASET_SPLIT": reads(host, section("(?:dataset|val_dataset|test_dataset|relax_dataset)"))
        | reads(sources("datasets/*.py"), r"(?<![\w.])(?:self\.config|config|current_split_config)")
        | {f"{split}_split_settings" for split in re.findall(r"convert_settings_to_split_settings\([^)]*\"(\w+)\"\)",
                                                             host)},
        "TOP_LEVEL": reads("\n".join([source_of(utils, "new_trainer_context"), source_of(utils, "build_config"),
                                      source_of(FAIRCHEM / "common/distutils.py", "setup"),
                                      source_of(FAIRCHEM / "_cli.py", "main"), (FAIRCHEM / "tasks/task.py").read_text()]),
                           r"(?<![\w.])(?:self\.config|config)"),
    }
    plugin = sources("fairchem1/launch/*.py", "fairchem1/cli.py", root=REPO_ROOT / "leignn_plugin")
    found["TOP_LEVEL"] |= reads(plugin, r"(?<![\w.\]])config")
    for name, keys in found.items():
        assert len(keys) >= 5, f"the scan for {name} found almost nothing: fairchem's code moved, update the scan"
        listed = getattr(config_keys, name) | (config_keys.PLUGIN_TOP_LEVEL if name == "TOP_LEVEL" else set())
        missing = sorted(keys - listed)
        assert not missing, f"fairchem reads {name} keys missing from config_keys.{name}: {missing}"
    registered = {m.group(1) for m in re.finditer(r"register_dataset\(\s*\"(\w+)\"", sources("datasets/*.py"))}
    assert registered | {"ase_db"} >= config_keys.LMDB_FORMATS | config_keys.FOLDER_FORMATS


# --- datasets ------------------------------------------------------------------------------------------


def splits(demo_data: Path, **bad: Path) -> list[str]:
    """Overrides pointing train/val/test at the demo S2EF data, except the ``bad`` ones."""
    paths = {s: bad.get(s, demo_data / "oc20_s2ef" / s) for s in ("train", "val", "test")}
    return [f"--dataset.{s}.src={p}" for s, p in paths.items()]


def test_missing_dataset_src(tmp_path, demo_data, bad_input):
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run",
                             *splits(demo_data, train=tmp_path / "nowhere"))
    line = refused(proc, tmp_path / "run")
    assert line == f"leignn: error: dataset.train.src: {tmp_path / 'nowhere'} does not exist"
    bad_input("missing dataset src", "main.py --mode train ... --dataset.train.src=DIR", line)


def test_empty_dataset_folder(tmp_path, demo_data, bad_input):
    (tmp_path / "empty").mkdir()
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run", *splits(demo_data, val=tmp_path / "empty"))
    line = refused(proc, tmp_path / "run")
    assert line == f"leignn: error: dataset.val.src: {tmp_path / 'empty'} holds no .lmdb files"
    bad_input("dataset folder without .lmdb files", "main.py --mode train ... --dataset.val.src=DIR", line)


def test_corrupt_lmdb(tmp_path, demo_data, bad_input):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "data.0000.lmdb").write_bytes(os.urandom(64 * 1024))
    proc = run_main_py("--mode", "validate", "--config-yml", DEMO_CONFIG, "--cpu", "--run-dir", str(tmp_path / "run"),
                       *splits(demo_data, val=folder))
    line = refused(proc, tmp_path / "run")
    assert f"dataset.val.src: {folder / 'data.0000.lmdb'} is not an LMDB file" in line
    bad_input("corrupt .lmdb (random bytes)", "main.py --mode validate ... --dataset.val.src=DIR", line)


def truncated_copy(demo_data: Path, folder: Path) -> Path:
    """The demo's S2EF train split with its LMDB file cut to half its size (lmdb reading it: SIGBUS)."""
    shutil.copytree(demo_data / "oc20_s2ef" / "train", folder)
    file = folder / "data.0000.lmdb"
    os.truncate(file, file.stat().st_size // 2)
    return file


def test_truncated_lmdb_through_main_py(tmp_path, demo_data, bad_input):
    file = truncated_copy(demo_data, tmp_path / "truncated")
    proc = run_main_py("--mode", "validate", "--config-yml", DEMO_CONFIG, "--cpu", "--run-dir", str(tmp_path / "run"),
                       *splits(demo_data, val=tmp_path / "truncated"))
    assert proc.returncode != 135, "SIGBUS: lmdb mapped the truncated file"
    line = refused(proc, tmp_path / "run")
    assert re.fullmatch(rf"leignn: error: dataset\.val\.src: {re.escape(str(file))} is truncated "
                        r"\([\d.]+ kB on disk, its header says [\d.]+ kB are in use\)", line), line
    bad_input("truncated .lmdb", "main.py --mode validate ... --dataset.val.src=DIR", line)


def test_truncated_lmdb_through_inspect(tmp_path, demo_data, bad_input):
    file = truncated_copy(demo_data, tmp_path / "truncated")
    proc = run_data_cli("inspect", str(tmp_path / "truncated"))
    assert proc.returncode != 135, "SIGBUS: lmdb mapped the truncated file"
    line = error_line(proc.returncode, proc.stderr, "leignn-data")
    assert f"{file} is truncated" in line and "are in use" in line
    bad_input("truncated .lmdb (inspect)", "leignn-data inspect DIR", line)


def test_lmdb_header_checks(tmp_path, demo_data):
    """Each way a file can be wrong, read from the header alone (no lmdb, so no SIGBUS possible)."""
    good = demo_data / "oc20_s2ef" / "val" / "data.0000.lmdb"
    header = read_header(good)
    assert header.entries > 0 and header.used_bytes <= good.stat().st_size
    assert len(check_lmdb_source(good.parent, "dataset.val.src")) == 1

    def problem(data: bytes) -> str:
        path = tmp_path / "x.lmdb"
        path.write_bytes(data)
        with pytest.raises(DataError) as err:
            read_header(path)
        return str(err.value)

    content = good.read_bytes()
    assert "is empty" in problem(b"")
    assert "shorter than LMDB's header" in problem(content[:100])
    assert "shorter than LMDB's two header pages" in problem(content[:header.page_size + 10])
    assert "is truncated" in problem(content[:header.page_size * 2])
    assert "not an LMDB file" in problem(b"\0" * len(content))
    version = bytearray(content)
    version[20] = 7  # the data version of the first meta page
    assert "LMDB data format 7" in problem(bytes(version))
    with pytest.raises(DataError, match="is a folder, not an LMDB file"):
        read_header(tmp_path)
    with pytest.raises(DataError, match=r"^dataset.test.src: .*does not exist$"):
        check_lmdb_source(tmp_path / "missing", "dataset.test.src")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_lmdb(tmp_path, demo_data):
    path = tmp_path / "data.0000.lmdb"
    shutil.copy(demo_data / "oc20_s2ef" / "val" / "data.0000.lmdb", path)
    path.chmod(0)
    with pytest.raises(DataError, match="cannot be read \\(permission denied\\)"):
        check_lmdb_source(tmp_path, "dataset.val.src")


def test_other_lmdb_readers_check_first(tmp_path, demo_data):
    """leignn-submission's --*-lmdb and leignn-md's starting structure refuse a truncated file too."""
    from leignn_plugin.md.structure import read_structure
    from leignn_plugin.workflows.submission import dataset_ids

    file = truncated_copy(demo_data, tmp_path / "truncated")
    with pytest.raises(DataError, match=r"^--id-lmdb: .* is truncated"):
        dataset_ids(tmp_path / "truncated", "--id-lmdb")
    with pytest.raises(DataError, match="is truncated"):
        read_structure(file)


# --- datasets a run cannot use as given ------------------------------------------------------------------


def test_the_same_data_for_train_and_val(tmp_path, demo_data, bad_input):
    """Also through a symbolic link: fairchem would pick the best checkpoint on its training data."""
    train, link = tmp_path / "train", tmp_path / "val_link"
    shutil.copytree(demo_data / "oc20_s2ef" / "train", train)
    link.symlink_to(train, target_is_directory=True)
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run", *splits(demo_data, train=train, val=link))
    line = refused(proc, tmp_path / "run")
    assert line == (f"leignn: error: dataset.val.src and dataset.train.src are the same data ({train.resolve()}): "
                    "fairchem would validate on the training data and keep the checkpoint that fits it best; give "
                    "a separate validation split")
    bad_input("the same data for train and val", "main.py --mode train ... --dataset.val.src=TRAIN_DIR", line)


def test_is2re_data_under_an_s2ef_config(tmp_path, demo_data, bad_input):
    is2re = tmp_path / "is2re"
    shutil.copytree(demo_data / "oc20_is2re" / "train", is2re)
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run", *splits(demo_data, train=is2re))
    line = refused(proc, tmp_path / "run")
    assert line.startswith(f"leignn: error: dataset.train.src: {is2re}, record 0 has no 'y' (key_mapping y -> "
                           "energy), which the run fits; it holds "), line
    assert "y_relaxed" in line
    bad_input("IS2RE data under an S2EF config", "main.py --mode train --config-yml S2EF_CONFIG "
              "--dataset.train.src=IS2RE_DIR", line)


# --- optim values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "message"), [
    ("--optim.batch_size=0", "optim.batch_size must be a positive integer, got 0 (in --optim.batch_size=0)"),
    ("--optim.batch_size=abc", "optim.batch_size must be a positive integer, got 'abc' (in --optim.batch_size=abc)"),
    ("--optim.lr_initial=-0.001", "optim.lr_initial must be a positive number, got -0.001 (in --optim.lr_initial=-0.001)"),
    ("--optim.max_epochs=abc", "optim.max_epochs must be a positive integer, got 'abc' (in --optim.max_epochs=abc)"),
])
def test_optim_value_through_main_py(tmp_path, bad_input, override, message):
    proc = train_with_config(REPO_ROOT / DEMO_CONFIG, tmp_path / "run", override)
    line = refused(proc, tmp_path / "run")
    assert line == f"leignn: error: {message}"
    bad_input(f"an optim value fairchem cannot use ({override.removeprefix('--')})",
              f"main.py --mode train --config-yml {DEMO_CONFIG} {override}", line)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("batch_size", "abc", "optim.batch_size must be a positive integer, got 'abc'"),
    ("batch_size", True, "optim.batch_size must be a positive integer, got True"),
    ("eval_batch_size", 0, "optim.eval_batch_size must be a positive integer, got 0"),
    ("lr_initial", -0.001, "optim.lr_initial must be a positive number, got -0.001"),
    ("lr_initial", float("nan"), "optim.lr_initial must be a positive number, got nan"),
    ("num_workers", -1, "optim.num_workers must be an integer >= 0, got -1"),
    ("ema_decay", 1.5, "optim.ema_decay must be a number in [0, 1), or null (0 or null: no EMA), got 1.5"),
    ("clip_grad_norm", "big", "optim.clip_grad_norm must be a number >= 0, or false/null"),
    ("checkpoint_every", 0, "optim.checkpoint_every must be a positive integer (or -1: never), got 0"),
    ("eval_every", 2.5, "optim.eval_every must be a positive integer, got 2.5"),
])
def test_optim_values_are_checked(key, value, message):
    config = build(REPO_ROOT / DEMO_CONFIG)
    config["optim"][key] = value
    assert refusal(config).startswith(f"config x.yml: {message}")


# --- the model's size ------------------------------------------------------------------------------------


def test_a_model_too_large_to_build(tmp_path, bad_input):
    proc = train_with_config(demo_config(tmp_path, hidden_channels=10**12), tmp_path / "run")
    line = refused(proc, tmp_path / "run")
    assert "model.hidden_channels=1000000000000" in line and "more than the 4.3e+09 allowed" in line
    bad_input("a model too large to build (hidden_channels: 10**12)", "main.py --mode train --config-yml CONFIG", line)
    with pytest.raises(OptionError, match=r"num_layers=1000000, .* make a model of 9\.5e\+10 parameters"):
        LEIGNN(hidden_channels=64, num_layers=10**6)  # refused before any layer is allocated


@pytest.mark.parametrize("options", [{}, {"hidden_channels": 16, "num_layers": 1, "num_rbf": 8},
                                     {"hidden_channels": 32, "num_layers": 3, "virtual_node": False},
                                     {"hidden_channels": 24, "num_elements": 30, "direct_forces": False},
                                     {"hidden_channels": 8, "num_layers": 2, "node_update": "painn"}])
def test_the_size_estimate_is_the_built_models_count(options):
    from leignn_plugin.core.model import LEIGNNPotential
    from leignn_plugin.core.options import estimated_parameters

    model = LEIGNNPotential(**options)
    assert estimated_parameters(options) == sum(p.numel() for p in model.parameters())
