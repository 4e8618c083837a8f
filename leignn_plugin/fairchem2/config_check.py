"""Checks of a ``fairchem -c`` config before any rank starts: one line for what would otherwise fail deep
inside Hydra's instantiation or a dataloader, minutes later and with a page of traceback.

The config is composed and resolved exactly as fairchem's own ``fairchem -c`` does (its
``get_hydra_config_from_yaml``), then every LEIGNN model in it is built (so option names, types and
ranges get the core's one-line messages, with the closest name for a misspelt one), its heads are
matched to the backbone and the tasks to the heads' outputs, and every dataset source must exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from leignn_plugin.checkpoints.names import role_of
from leignn_plugin.core.options import SIZE_DEFAULTS, check_known
from leignn_plugin.data.lmdb_check import LMDB_SUFFIXES, check_lmdb_file, is_lmdb_file
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem2.checkpoint import reference_values
from leignn_plugin.fairchem2.models import (
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

DATASET_SUFFIXES = (".aselmdb", ".db", ".lmdb", ".traj", ".extxyz", ".xyz")


class ConfigError(UsageError, ValueError):
    """A ``fairchem -c`` config that cannot train LEIGNN; one line naming the file and the key."""


def load_config(path: Path, overrides: Sequence[str]) -> DictConfig:
    """The config fairchem would run: composed with its ``defaults``, the overrides applied, resolved."""
    from fairchem.core._cli import get_hydra_config_from_yaml

    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    try:
        return get_hydra_config_from_yaml(str(path), list(overrides))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())[:400]}") from None
    except (OmegaConfBaseException, ValueError, KeyError) as err:
        text = " ".join(str(err).split())
        raise ConfigError(f"{path}: cannot compose the config: {text[:400]}") from None
    except Exception as err:  # Hydra's own composition errors have no common importable base
        missing = re.search(r"Could not find 'element_refs/([^']+)'", str(err))
        if missing:
            option = path.parent / "element_refs" / f"{missing[1]}.yaml"
            raise ConfigError(f"{path}: element_refs={missing[1]}, but there is no {option}: fit the references "
                              f"to the training split with `leignn-data inspect TRAIN_DIR --references {option}`, "
                              "or train without them: element_refs=none") from None
        if type(err).__module__.startswith("hydra"):
            raise ConfigError(f"{path}: {' '.join(str(err).split())[:400]}") from None
        raise


def _walk(node: object, where: str = "") -> Iterator[tuple[str, dict]]:
    """Every mapping of a plain config tree, with its dotted key."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}[{index}]")


HEAD_CLASSES = {"energy": LEIGNNEnergyHead, "forces": LEIGNNDirectForceHead, "conservative": LEIGNNConservativeHead}
"""The 2.x head class of each head role (``checkpoints.names``)."""


def check_model(model: dict, where: str, path: Path, tasks: list[dict]) -> None:
    """A ``HydraModel`` block on LEIGNN's backbone: options, heads and task names."""
    options = {k: v for k, v in model["backbone"].items() if k != "model"}
    try:
        check_known(options, LEIGNNBackbone.option_rules(), prefix=f"{where}.backbone.")
        backbone = LEIGNNBackbone(**options)
    except (UsageError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    heads = model.get("heads") or {}
    outputs: set[str] = set()
    for name, head in heads.items():
        role = role_of(head.get("module"), 2) if isinstance(head, dict) else None
        if role not in HEAD_CLASSES:
            module = head.get("module") if isinstance(head, dict) else head
            raise ConfigError(f"{path}: {where}.heads.{name}.module is '{module}', not a LEIGNN head "
                              "(leignn_plugin.fairchem2.models.LEIGNNEnergyHead, LEIGNNDirectForceHead or "
                              "LEIGNNConservativeHead)")
        head_cls = HEAD_CLASSES[role]
        problem = head_cls.backbone_problem(backbone)
        if problem:
            raise ConfigError(f"{path}: {where}.heads.{name}: {problem}")
        if issubclass(head_cls, LEIGNNConservativeHead):
            if not model.get("pass_through_head_outputs"):
                raise ConfigError(f"{path}: {where}.pass_through_head_outputs must be true with "
                                  "LEIGNNConservativeHead (its outputs are named energy, forces and stress)")
            outputs |= {"energy", "forces", "stress"}
        else:
            outputs.add(name)
    for task in tasks:
        if task.get("name") not in outputs:
            raise ConfigError(f"{path}: task '{task.get('name')}' has no LEIGNN head output of that name "
                              f"(the heads give {', '.join(sorted(outputs)) or 'nothing'})")


ELEMENTWISE_LOSSES = ("fairchem.core.modules.loss.MAELoss", "fairchem.core.modules.loss.MSELoss")


def check_losses(tasks: list[dict], path: Path) -> None:
    """An atom-level task (forces) needs a per-atom loss: fairchem 2.x multiplies the loss by an [N] mask
    of free atoms, which an elementwise [N, 3] MAE or MSE cannot take (it fails at the first step)."""
    for task in tasks:
        loss = ((task.get("loss_fn") or {}).get("loss_fn") or {}).get("_target_")
        if task.get("level") == "atom" and loss in ELEMENTWISE_LOSSES:
            raise ConfigError(f"{path}: task '{task.get('name')}' uses {loss.rsplit('.', 1)[1]}, which cannot take "
                              "fairchem's per-atom mask; use fairchem.core.modules.loss.L2NormLoss")


def check_normalizers(tasks: list[dict], path: Path) -> None:
    """fairchem's ``Normalizer`` keeps ``mean`` and ``rmsd`` as float buffers: an integer fails deep in
    Hydra's instantiation, a non-positive rmsd divides by zero."""
    for task in tasks:
        normalizer = task.get("normalizer") or {}
        for key in ("mean", "rmsd"):
            value = normalizer.get(key)
            if value is None:
                continue
            if not isinstance(value, float):
                raise ConfigError(f"{path}: task '{task.get('name')}' normalizer {key} must be a float "
                                  f"(write {float(value) if isinstance(value, int) else 1.0!r}), got {value!r}")
        if isinstance(normalizer.get("rmsd"), float) and normalizer["rmsd"] <= 0:
            raise ConfigError(f"{path}: task '{task.get('name')}' normalizer rmsd must be positive, "
                              f"got {normalizer['rmsd']}")


ELEMENT_REFERENCES = "fairchem.core.modules.normalization.element_references.ElementReferences"


def check_element_references(tasks: list[dict], path: Path, largest_number: int) -> None:
    """A task's ``element_references`` is fairchem's ``ElementReferences`` of one list of finite numbers
    indexed by atomic number, long enough for every element the model takes (fairchem indexes it with
    the atoms' numbers, which fails mid-run for a short list)."""
    for task in tasks:
        node = task.get("element_references")
        if node is None:
            continue
        where = f"task '{task.get('name')}' element_references"
        if not isinstance(node, dict) or node.get("_target_") != ELEMENT_REFERENCES:
            target = node.get("_target_") if isinstance(node, dict) else node
            raise ConfigError(f"{path}: {where} is {target!r}, not {ELEMENT_REFERENCES} (write them with "
                              "leignn-data inspect TRAIN_DIR --references configs/fairchem2/element_refs/NAME.yaml)")
        values = reference_values(node)
        if values is None:
            raise ConfigError(f"{path}: {where} holds no list of finite numbers, one per atomic number")
        if len(values) <= largest_number:
            raise ConfigError(f"{path}: {where} has {len(values)} values, but the model takes atomic numbers up "
                              f"to {largest_number}: give one value per atomic number 0..{largest_number}")


def check_sources(tree: dict, path: Path) -> None:
    """Every ``splits.<split>.src`` path exists and, for a folder, holds dataset files; every LMDB file
    among them (``.aselmdb``, ``.lmdb``) has a complete header and sound tree pages (``lmdb_check``:
    fairchem's reader maps the file, and a truncated or corrupt one kills the run with SIGBUS)."""
    for where, node in _walk(tree):
        splits = node.get("splits")
        if not isinstance(splits, dict):
            continue
        for split, spec in splits.items():
            sources = spec.get("src") if isinstance(spec, dict) else None
            for src in [sources] if isinstance(sources, str) else (sources or []):
                source = Path(src)
                key = f"{where}.splits.{split}.src"
                if not source.exists():
                    raise ConfigError(f"{path}: {key}: {source} does not exist "
                                      "(build it with leignn-data ... --output-format aselmdb)")
                if source.is_dir() and not any(p.suffix in DATASET_SUFFIXES for p in source.iterdir()):
                    raise ConfigError(f"{path}: {key}: {source} holds no dataset files "
                                      f"({', '.join(DATASET_SUFFIXES)})")
                files = ([f for f in sorted(source.iterdir()) if f.suffix in LMDB_SUFFIXES] if source.is_dir()
                         else [source])
                for file in files:
                    if file.is_file() and is_lmdb_file(file):
                        try:
                            check_lmdb_file(file)
                        except UsageError as err:
                            raise ConfigError(f"{path}: {key}: {err}") from None


def check_config(path: Path, overrides: Sequence[str]) -> DictConfig:
    """The composed config of ``path`` with ``overrides``, after the checks above; ConfigError otherwise."""
    config = load_config(path, overrides)
    tree = OmegaConf.to_container(config, resolve=True)
    runner = tree.get("runner") or {}
    tasks = [t for t in (runner.get("train_eval_unit") or {}).get("tasks") or [] if isinstance(t, dict)]
    largest_number = 0
    for where, node in _walk(tree):
        backbone = node.get("backbone")
        if isinstance(backbone, dict) and role_of(backbone.get("model"), 2) == "backbone":
            check_model(node, where, path, tasks)
            largest_number = max(largest_number, int(backbone.get("num_elements", SIZE_DEFAULTS["num_elements"])))
    check_normalizers(tasks, path)
    check_element_references(tasks, path, largest_number)
    check_losses(tasks, path)
    check_sources(tree, path)
    return config
