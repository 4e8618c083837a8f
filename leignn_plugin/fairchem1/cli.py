"""``main.py``: fairchem's command line with the plugin imported first and clear errors for bad input.

Same flags as fairchem's own ``main.py`` (``--mode --config-yml --cpu --num-gpus --num-nodes --submit
--checkpoint ...`` and ``--a.b=value`` overrides).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from leignn_plugin.console import quiet_host_import, rank_warnings, run_command
from leignn_plugin.errors import UsageError
from leignn_plugin.install_hint import broken_install


def _fail(message: str) -> int:
    print(f"leignn: error: {message}", file=sys.stderr)
    return 2


def load_checked_config(args: argparse.Namespace, overrides: list[str]) -> dict:
    """fairchem's ``build_config`` with the usual mistakes turned into one clear line each."""
    from fairchem.core.common.utils import build_config

    if args.config_yml is None:
        raise UsageError("no config given: pass --config-yml PATH (see configs/ for examples)")
    path = Path(args.config_yml)
    if not path.is_file():
        raise UsageError(f"config file not found: {path} (check --config-yml)")
    try:
        config = build_config(args, overrides)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"config {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    except ValueError as err:
        raise UsageError(f"config {path}: {err}") from None
    if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
        raise UsageError(f"config {path} has no 'model: {{name: ...}}' section")
    check_model_name(config["model"], path)
    from leignn_plugin.fairchem1.config_check import check_config

    check_config(config, overrides, path)  # unknown keys (with the closest), model options, names
    return config


def check_model_name(model: dict, path: Path) -> None:
    """Fail early, with the known names, when a config names a model nobody registered."""
    from fairchem.core.common.registry import registry
    from fairchem.core.common.utils import setup_imports

    with quiet_host_import():  # imports every fairchem model module, some of which warn as they load
        setup_imports()
    names = [model["name"]]
    if model["name"] == "hydra":
        backbone = model.get("backbone") or {}
        names += [backbone.get("model")] if backbone.get("model") else []
        names += [head.get("module") for head in (model.get("heads") or {}).values() if head.get("module")]
    for name in names:
        try:
            cls = registry.get_model_class(name)
        except RuntimeError:
            cls = None
        if cls is None:
            known = sorted(k for k in registry.mapping["model_name_mapping"] if "leignn" in k)
            raise UsageError(
                f"config {path}: unknown model '{name}'; the plugin registers {', '.join(known)} "
                "(fairchem's own models and dotted paths like leignn_plugin.fairchem1.models.LEIGNN also work)"
            )


def unique_run_id(run_dir: Path, identifier: str) -> str:
    """``<timestamp>[-<n>]-<identifier>``, unused under ``run_dir``.

    fairchem derives the id from a float32 tensor of the time, which resolves only 128 s: two runs
    started within two minutes in one run directory would share checkpoint and result folders.
    """
    import datetime

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    suffix = f"-{identifier}" if identifier else ""
    candidate, n = f"{stamp}{suffix}", 1
    while any(os.path.lexists(run_dir / sub / candidate) for sub in ("checkpoints", "results", "logs/tensorboard")):
        candidate, n = f"{stamp}-{n}{suffix}", n + 1
    return candidate


def main(argv: list[str] | None = None) -> int:
    """``main.py``'s command; ends as every ``leignn-*`` command does (``console.run_command``: one line
    for bad input, quiet exits for Ctrl-C and closed pipes)."""
    return run_command("leignn", lambda: run_main(argv))


def run_main(argv: list[str] | None = None) -> int:
    """Parse fairchem's flags, check the config, and run locally or submit to SLURM."""
    try:
        from fairchem.core.common.flags import flags
        from fairchem.core.common.utils import setup_logging

        import leignn_plugin.fairchem1  # noqa: F401  (registers leignn in this process)
        from leignn_plugin.fairchem1.config_check import check_datasets
        from leignn_plugin.fairchem1.launch.preemption import TrainingStopped
        from leignn_plugin.fairchem1.safe_load import TRUST_DATA_HELP, TRUST_HELP, check_run_checkpoint
    except ImportError as err:
        return _fail(broken_install(err, Path(__file__).resolve().parents[2]))

    parser = flags.get_parser()
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    parser.add_argument("--trust-data", action="store_true", help=TRUST_DATA_HELP)
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--") or "=" not in o]
    if bad:
        return _fail(f"unrecognised arguments {' '.join(bad)}: overrides take the form --section.key=value")
    if args.num_gpus < 1:
        return _fail("--num-gpus sets the number of ranks and must be at least 1")
    setup_logging()
    try:
        config = load_checked_config(args, overrides)
        if args.checkpoint is not None and not Path(args.checkpoint).is_file():
            raise UsageError(f"checkpoint not found: {args.checkpoint} (check --checkpoint)")
        if args.checkpoint is not None:  # refused pickle, truncated, not LEIGNN: one line before any rank starts
            check_run_checkpoint(Path(args.checkpoint), config["model"], args.trust_checkpoint)
        config["trust_checkpoint"] = args.trust_checkpoint  # read by every rank (launch/runner.py)
        config["trust_data"] = args.trust_data
        check_datasets(config)  # missing, empty, truncated or corrupt data: one line here, not a SIGBUS in a rank
        from leignn_plugin.fairchem1.launch.dispatch import dispatch

        if not args.submit and config.get("timestamp_id") is None:
            config["timestamp_id"] = unique_run_id(Path(args.run_dir), args.identifier)
        os.environ["PYTHONWARNINGS"] = rank_warnings(os.environ.get("PYTHONWARNINGS"))  # ranks import fairchem too
        dispatch(args, config)
    except UsageError as err:
        return _fail(str(err))
    except TrainingStopped as stopped:
        print(f"leignn: {stopped.message}", file=sys.stderr)
        return int(stopped.code)
    except KeyboardInterrupt:  # not training (that saves and stops with TrainingStopped): checks, evaluation
        print("leignn: interrupted", file=sys.stderr)
        return 130
    return 0
