"""``main.py``'s checks of a built config before any rank starts: one line per mistake, naming the key.

- :func:`check_config`: unknown keys in the file or in a ``--a.b=value`` override (with the closest
  valid key), LEIGNN's model options (types, ranges, even widths, names, the model's size; also for a
  hydra backbone and its heads), the types and ranges of the ``optim`` values fairchem reads, and the
  names of the optimiser, the scheduler and the dataset formats;
- :func:`check_datasets`: every dataset fairchem's trainer will open exists and, for LMDB formats,
  holds LMDB files that are complete and uncorrupted (read from their headers before lmdb maps them:
  a truncated file would otherwise kill the run with SIGBUS and no message); a training run does not
  validate on its training data; and the records hold the targets the run trains and scores
  (IS2RE data under an S2EF config lacks forces).

Without these, fairchem ignores a misspelt key, and a bad option or dataset fails inside every rank
with a long traceback whose last line hides the cause.
"""

from __future__ import annotations

import glob
import inspect
from collections.abc import Collection, Mapping
from pathlib import Path

import torch

from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.core.options import (
    OptionError,
    Rule,
    boolean,
    check_combination,
    check_values,
    closest,
    is_integer,
    is_number,
    positive_integer,
    positive_number,
)
from leignn_plugin.core.representation import LEIGNNRepresentation
from leignn_plugin.data.errors import DataError
from leignn_plugin.data.safe_records import check_lmdb_dataset
from leignn_plugin.errors import UsageError
from leignn_plugin.fairchem1.config_keys import (
    DATASET_SPLIT,
    DATASET_SPLITS,
    FOLDER_FORMATS,
    LMDB_FORMATS,
    LOGGER,
    OPTIM,
    PLUGIN_TOP_LEVEL,
    TASK,
    TOP_LEVEL,
)

Keys = Collection[str]


class AnyName(Collection[str]):
    """Every name is valid at this level, but what lies below each is still checked (hydra's head names)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


ANY_NAME = AnyName()


def model_class(name: object) -> type | None:
    """fairchem's ``HydraModel`` for ``hydra``, the LEIGNN class ``name`` stands for (its names compared,
    never imported: ``checkpoints.names``), or None for any other model."""
    if name == "hydra":
        from fairchem.core.models.base import HydraModel

        return HydraModel
    from leignn_plugin.fairchem1.checkpoint import leignn_class

    return leignn_class(name)


def leignn_rules(cls: type | None) -> dict[str, Rule] | None:
    """The options of a LEIGNN model or backbone class and their rules; None for any other class."""
    if cls is None:
        return None
    if issubclass(cls, LEIGNNPotential):
        return cls.representation_class.option_rules()
    if issubclass(cls, LEIGNNRepresentation):
        return cls.option_rules()
    return None


def head_keys(cls: type | None) -> frozenset[str] | None:
    """``module`` and the options of a LEIGNN hydra head (it says which backbones it fits); None otherwise."""
    if cls is None or not hasattr(cls, "backbone_problem"):
        return None
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset({"module"} | {p.name for p in params if p.name not in ("self", "backbone")})


def scheduler_parameters(optim: Mapping) -> frozenset[str]:
    """The ``optim`` keys fairchem passes to the chosen torch scheduler (its keyword parameters)."""
    cls = getattr(torch.optim.lr_scheduler, str(optim.get("scheduler", "LambdaLR")), None)
    if not isinstance(cls, type):
        return frozenset()
    params = inspect.signature(cls).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD) - {"optimizer"}


def _model_keys(model: Mapping, path: tuple[str, ...]) -> Keys | None:
    """Known keys at ``model.<path>`` for LEIGNN models, hydra with a LEIGNN backbone, and its heads."""
    cls = model_class(model.get("name"))
    rules = leignn_rules(cls)
    if rules is not None:
        return {"name", *rules} if not path else None
    if model.get("name") != "hydra" or cls is None:
        return None
    if not path:
        params = inspect.signature(cls.__init__).parameters
        return {"name", *(p for p in params if p != "self")}
    backbone = model.get("backbone")
    if path == ("backbone",) and isinstance(backbone, Mapping):
        backbone_rules = leignn_rules(model_class(backbone.get("model")))
        return None if backbone_rules is None else {"model", *backbone_rules}
    heads = model.get("heads")
    if path == ("heads",) and isinstance(heads, Mapping):
        return ANY_NAME
    if len(path) == 2 and path[0] == "heads" and isinstance(heads, Mapping) and isinstance(heads.get(path[1]),
                                                                                           Mapping):
        return head_keys(model_class(heads[path[1]].get("module")))
    return None


def known_keys(config: Mapping, path: tuple[str, ...]) -> Keys | None:
    """The keys that may appear at ``path`` in ``config``; None where any key may (not checked)."""
    if not path:
        return TOP_LEVEL | PLUGIN_TOP_LEVEL
    section, rest = path[0], path[1:]
    value = config.get(section)
    if section == "model" and isinstance(value, Mapping):
        return _model_keys(value, rest)
    if rest and section != "dataset":
        return None
    if section == "optim" and isinstance(value, Mapping):
        return OPTIM | scheduler_parameters(value)
    if section == "task":
        return TASK
    if section == "logger" and isinstance(value, Mapping):
        return LOGGER
    if section == "dataset" and isinstance(value, Mapping):
        if not rest:
            return DATASET_SPLITS
        if len(rest) == 1 and rest[0] in DATASET_SPLITS:
            return DATASET_SPLIT
    return None


def _all_paths() -> dict[str, tuple[str, ...]]:
    """Section keys by name, to point a key given in the wrong section to the right one."""
    paths: dict[str, tuple[str, ...]] = {}
    for section, keys in (("optim", OPTIM), ("task", TASK), ("dataset.train", DATASET_SPLIT)):
        for key in keys:
            paths.setdefault(key, (*section.split("."), key))
    return paths


def suggestion(path: tuple[str, ...], known: Keys) -> str:
    """``; did you mean a.b?`` for the closest known key at that level (or the same key in another
    section), else the known keys when they are few."""
    best = closest(path[-1], known)
    if best is not None:
        return f"; did you mean {'.'.join((*path[:-1], best))}?"
    elsewhere = _all_paths().get(path[-1])
    if elsewhere is not None and elsewhere[:-1] != path[:-1]:
        return f"; did you mean {'.'.join(elsewhere)}?"
    if len(known) <= 12:
        return f" (known here: {', '.join(sorted(known))})"
    return ""


def unknown_key(config: Mapping, path: tuple[str, ...]) -> tuple[str, str] | None:
    """The first key along ``path`` not known at its level (dotted) and the suggestion; None when all are."""
    for depth in range(len(path)):
        known = known_keys(config, path[:depth])
        if known is None:
            return None
        if path[depth] not in known:
            where = path[:depth + 1]
            return ".".join(where), suggestion(where, known)
    return None


def _unknown_in(config: Mapping, node: Mapping, path: tuple[str, ...]) -> tuple[str, str] | None:
    """The first unknown key anywhere below ``node`` (at ``path``), walking the checked sections."""
    known = known_keys(config, path)
    if known is None:
        return None
    for key, value in node.items():
        where = (*path, str(key))
        if key not in known:
            return ".".join(where), suggestion(where, known)
        if isinstance(value, Mapping):
            found = _unknown_in(config, value, where)
            if found:
                return found
    return None


def override_key(override: str) -> tuple[str, ...]:
    """``--optim.max_epochs=3`` -> ``("optim", "max_epochs")`` (as fairchem splits it)."""
    return tuple(override.removeprefix("--").split("=", 1)[0].split("."))


def check_keys(config: Mapping, overrides: list[str], path: Path) -> None:
    """Unknown keys: first in the command-line overrides, then in the file (with its includes)."""
    for override in overrides:
        problem = unknown_key(config, override_key(override))
        if problem:
            key, hint = problem
            raise UsageError(f"unknown key {key} in {override}{hint}" if hint.startswith(";")
                             else f"unknown key {key}{hint} in {override}")
    problem = _unknown_in(config, config, ())
    if problem:
        raise UsageError(f"config {path}: unknown key {''.join(problem)}")


def _option_defaults() -> dict[str, object]:
    """The representation's defaults (what a config leaves out)."""
    params = inspect.signature(LEIGNNRepresentation.__init__).parameters
    return {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}


def check_model_options(model: Mapping) -> None:
    """LEIGNN's option values, for ``leignn`` (or a dotted path to it) and a hydra LEIGNN backbone and heads."""
    rules = leignn_rules(model_class(model.get("name")))
    if rules is not None:
        options = {k: v for k, v in model.items() if k != "name"}
        check_values(options, rules, "model.")
        check_combination(options, "model.")
        return
    backbone = model.get("backbone")
    if model.get("name") != "hydra" or not isinstance(backbone, Mapping):
        return
    rules = leignn_rules(model_class(backbone.get("model")))
    if rules is None:
        return
    options = {k: v for k, v in backbone.items() if k != "model"}
    check_values(options, rules, "model.backbone.")
    check_combination(options, "model.backbone.")
    settings = {**_option_defaults(), **options}
    for name, head in (model.get("heads") or {}).items():
        cls = model_class(head.get("module")) if isinstance(head, Mapping) else None
        if cls is not None and hasattr(cls, "backbone_problem"):
            problem = cls.backbone_problem(settings["regress_forces"], settings["direct_forces"])
            if problem:
                raise OptionError(f"model.heads.{name}: {problem}")


def _class_names(module: object, base: type) -> list[str]:
    return [name for name, value in vars(module).items() if isinstance(value, type) and issubclass(value, base)]


def check_names(config: Mapping) -> None:
    """The optimiser, scheduler and dataset format name things that exist."""
    from fairchem.core.common.registry import registry

    optim = config.get("optim")
    if isinstance(optim, Mapping):
        name = optim.get("optimizer", "AdamW")
        if not isinstance(getattr(torch.optim, str(name), None), type):
            raise OptionError(_not_one_of("optim.optimizer", name, _class_names(torch.optim, torch.optim.Optimizer),
                                          "an optimiser of torch.optim"))
        name = optim.get("scheduler", "LambdaLR")
        schedulers = [n for n in dir(torch.optim.lr_scheduler) if n[0].isupper() and n != "Optimizer"]
        if name != "Null" and not isinstance(getattr(torch.optim.lr_scheduler, str(name), None), type):
            raise OptionError(_not_one_of("optim.scheduler", name, [*schedulers, "Null"],
                                          "a scheduler of torch.optim.lr_scheduler or Null"))
    formats = list(registry.mapping["dataset_name_mapping"])
    for split, settings in dataset_splits(config):
        name = settings.get("format", "lmdb")
        if name not in formats:
            raise OptionError(_not_one_of(f"dataset.{split}.format", name, formats, "a registered dataset format"))


def _not_one_of(key: str, value: object, names: list[str], what: str) -> str:
    best = closest(str(value), names)
    hint = f"; did you mean {best}?" if best else f" ({', '.join(sorted(names))})"
    return f"{key} must be {what}, got {value!r}{hint}"


OPTIM_RULES: dict[str, Rule] = {
    "batch_size": positive_integer(),
    "eval_batch_size": positive_integer(),
    "num_workers": Rule("an integer >= 0", lambda v: is_integer(v) and v >= 0),
    "max_epochs": positive_integer(),
    "eval_every": positive_integer(),
    "checkpoint_every": Rule("a positive integer (or -1: never)", lambda v: is_integer(v) and (v >= 1 or v == -1)),
    "lr_initial": positive_number(),
    "weight_decay": Rule("a number >= 0", lambda v: is_number(v) and v >= 0),
    "clip_grad_norm": Rule("a number >= 0, or false/null (0, false, null: no clipping)",
                           lambda v: v is None or v is False or (is_number(v) and v >= 0)),
    "ema_decay": Rule("a number in [0, 1), or null (0 or null: no EMA)",
                      lambda v: v is None or (is_number(v) and 0 <= v < 1)),
    "warmup_steps": positive_integer(),  # LambdaLR's warm-up divides by it
    "warmup_epochs": Rule("a number >= 0", lambda v: is_number(v) and v >= 0),
    "warmup_factor": Rule("a number between 0 and 1", lambda v: is_number(v) and 0 <= v <= 1),
    "lr_gamma": positive_number(),
    "lr_milestones": Rule("a list of positive integers",
                           lambda v: isinstance(v, list) and all(is_integer(m) and m > 0 for m in v)),
    "energy_coefficient": Rule("a number >= 0", lambda v: is_number(v) and v >= 0),
    "force_coefficient": Rule("a number >= 0", lambda v: is_number(v) and v >= 0),
    "optimizer_params": Rule("a mapping of the optimiser's keyword arguments", lambda v: isinstance(v, Mapping)),
    "load_datasets_and_model_then_exit": boolean(),
}
"""Types and ranges of the ``optim`` values fairchem 1.10 reads (names in ``config_keys.OPTIM``); a wrong
one otherwise fails in every rank (``batch_size: 0`` in the sampler, ``max_epochs: abc`` in ``range``)."""


def check_optim(config: Mapping, overrides: list[str], path: Path) -> None:
    """The ``optim`` values with a rule; the message names the override that set a value, else the file."""
    optim = config.get("optim")
    if not isinstance(optim, Mapping):
        return
    for key, rule in OPTIM_RULES.items():
        if key not in optim:
            continue
        try:
            rule.check(f"optim.{key}", optim[key])
        except OptionError as err:
            given = [o for o in overrides if override_key(o) == ("optim", key)]
            raise UsageError(f"{err} (in {given[-1]})" if given else f"config {path}: {err}") from None


def check_config(config: dict, overrides: list[str], path: Path) -> None:
    """Keys, model options and names of a config built by fairchem's ``build_config``.

    Raises :class:`UsageError`: an unknown key in an override is named with the override; anything
    else with the config file.
    """
    try:
        check_names(config)  # first: the scheduler's name decides which optim keys are known
    except OptionError as err:
        raise UsageError(f"config {path}: {err}") from None
    check_keys(config, overrides, path)
    check_optim(config, overrides, path)
    try:
        if isinstance(config.get("model"), Mapping):
            check_model_options(config["model"])
    except OptionError as err:
        raise UsageError(f"config {path}: {err}") from None


def dataset_splits(config: Mapping) -> list[tuple[str, dict]]:
    """``(split, settings)`` for every dataset fairchem 1.10's trainer opens, in every mode.

    As the trainer does: the train split when it has ``src``; val and test when they have ``src``,
    and relax when it is not empty, each on top of the train settings unless ``use_train_settings:
    false``; a list is ``[train, val, test]``.
    """
    dataset = config.get("dataset")
    if isinstance(dataset, list):
        dataset = dict(zip(("train", "val", "test"), dataset))
    if not isinstance(dataset, Mapping):
        return []
    train = dataset.get("train") or {}
    if not isinstance(train, Mapping):
        return []
    splits = [("train", dict(train))] if "src" in train else []
    for split in ("val", "test", "relax"):
        settings = dataset.get(split) or {}
        if not isinstance(settings, Mapping) or (split != "relax" and "src" not in settings) or not settings:
            continue
        merged = {**train, **settings} if settings.get("use_train_settings", True) else dict(settings)
        splits.append((split, merged))
    return splits


def check_source(src: object, dataset_format: str, where: str, trusted: bool = False) -> None:
    """One split's ``src`` exists and, for LMDB formats, holds sound LMDB files whose first records
    unpickle safely (unless ``trusted``: ``--trust-data``)."""
    if isinstance(src, (list, tuple)):
        if dataset_format in LMDB_FORMATS and len(src) != 1:
            raise DataError(f"{where}: the {dataset_format} format takes one path (a file or a folder), "
                            f"got a list of {len(src)}")
        sources = list(src)
    else:
        sources = [src]
    for each in sources:
        if not isinstance(each, (str, Path)):
            raise DataError(f"{where} must be a path, got {each!r}")
        if dataset_format in LMDB_FORMATS:
            check_lmdb_dataset(each, where, trusted)
        elif dataset_format in FOLDER_FORMATS and not Path(each).is_dir():
            state = "is not a folder" if Path(each).exists() else "does not exist"
            raise DataError(f"{where}: {each} {state} ({dataset_format} reads a folder of structure files)")
        elif dataset_format == "ase_db" and not Path(each).exists() and not glob.glob(str(each)):
            raise DataError(f"{where}: {each} does not exist and matches no files")


def check_datasets(config: Mapping) -> None:
    """Every dataset the run will open, checked before any rank starts; :class:`DataError` names the key."""
    for split, settings in dataset_splits(config):
        if settings.get("src") is None:
            raise DataError(f"dataset.{split} has no src (the path of its data)")
        check_source(settings["src"], str(settings.get("format", "lmdb")), source_key(config, split),
                     bool(config.get("trust_data")))
    check_distinct_splits(config)
    check_targets(config)


def source_key(config: Mapping, split: str) -> str:
    """The key that sets ``split``'s data: its own ``src``, or the train split's it inherits."""
    own = (config.get("dataset") or {}).get(split) if isinstance(config.get("dataset"), Mapping) else None
    return f"dataset.{split}.src" if isinstance(own, Mapping) and "src" in own else "dataset.train.src"


def _paths(src: object) -> frozenset[Path]:
    sources = src if isinstance(src, (list, tuple)) else [src]
    return frozenset(Path(each).resolve() for each in sources if isinstance(each, (str, Path)))


def check_distinct_splits(config: Mapping) -> None:
    """A training run whose validation data are its training data (the same path, also through a link
    or a relative path) is refused: fairchem would pick the best checkpoint on data it trained on."""
    if config.get("mode") != "train":
        return
    splits = dict(dataset_splits(config))
    if "train" not in splits or "val" not in splits or source_key(config, "val") != "dataset.val.src":
        return
    shared = _paths(splits["train"]["src"]) & _paths(splits["val"]["src"])
    if shared:
        raise DataError(f"dataset.val.src and dataset.train.src are the same data ({min(shared)}): fairchem would "
                        "validate on the training data and keep the checkpoint that fits it best; give a separate "
                        "validation split")


def _output_of(config: Mapping, target: str) -> str | None:
    """The ``outputs`` entry a loss or metric ``target`` reads: itself, or the output it is a part of
    (``decomposition``); None for names that are no output (``misc``)."""
    outputs = config.get("outputs")
    if not isinstance(outputs, Mapping):
        return None
    if target in outputs:
        return target
    for name, settings in outputs.items():
        if isinstance(settings, Mapping) and target in (settings.get("decomposition") or {}):
            return str(name)
    return None


def targets_read(config: Mapping, split: str) -> list[str]:
    """The outputs whose labels ``split``'s records must hold in this mode: what training fits
    (``loss_functions``) on train, what validation scores (``evaluation_metrics``) on val."""
    mode = config.get("mode")
    if split == "train" and mode == "train":
        names = [t for loss in config.get("loss_functions") or [] if isinstance(loss, Mapping) for t in loss]
    elif split == "val" and mode in ("train", "validate"):
        metrics = (config.get("evaluation_metrics") or {}).get("metrics") or {}
        names = list(metrics) if isinstance(metrics, Mapping) else []
    else:
        return []
    found = [_output_of(config, str(name)) for name in names]
    return list(dict.fromkeys(name for name in found if name is not None))


def check_targets(config: Mapping) -> None:
    """The first record of each LMDB split holds a label for every output the run fits or scores there,
    under its own name or one ``key_mapping`` maps to it; else one line naming the split, the file and
    the missing key (IS2RE records, which hold ``y_relaxed`` but no forces, under an S2EF config)."""
    from leignn_plugin.data.safe_records import opened_lmdb_dataset

    if config.get("trust_data"):
        return  # records are then read only by fairchem, with full unpickling
    for split, settings in dataset_splits(config):
        targets = targets_read(config, split)
        src = settings.get("src")
        if not targets or str(settings.get("format", "lmdb")) not in LMDB_FORMATS or not isinstance(src, (str, Path)):
            continue
        mapping = settings.get("key_mapping") or {}
        with opened_lmdb_dataset(src) as dataset:
            if len(dataset) == 0:
                continue
            record = dataset[0]
        keys = getattr(record, "keys", ())
        keys = set(keys() if callable(keys) else keys)  # PyG Data: a method since PyG 2.4, a property before
        for target in targets:
            sources = [key for key, mapped in mapping.items()
                       if target in (mapped if isinstance(mapped, (list, tuple)) else [mapped])] or [target]
            if not any(key in keys for key in sources):
                via = f" (key_mapping {sources[0]} -> {target})" if sources != [target] else ""
                raise DataError(
                    f"{source_key(config, split)}: {src}, record 0 has no '{sources[0]}'{via}, which the run "
                    f"{'fits' if split == 'train' else 'scores'}; it holds {', '.join(sorted(keys))} "
                    "(IS2RE data under an S2EF config? point the split at data with these labels, or drop the "
                    "output from loss_functions and evaluation_metrics)"
                )
