"""The fairchem 1.10 checkpoint format (``main.py`` training: ``checkpoint.pt``, ``best_checkpoint.pt``)
read without fairchem: a dict of plain tensors, so both environments load it.

The model config names ``leignn`` (or a hydra on LEIGNN's backbone and heads), matched by name
(``names.py``); weights lose DDP's ``module.`` prefix and a hydra's ``output_heads.<head>.``; the EMA
weights are those fairchem's trainer uses (``optim.ema_decay`` set and ``ema`` stored), kept by
fairchem's ``ExponentialMovingAverage`` in the order of the stored model's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from leignn_plugin.adapters.checkpoint_files import (
    CheckpointError,
    stored_element_references,
    stored_normalizers,
)
from leignn_plugin.checkpoints.names import head_roles, is_leignn_config
from leignn_plugin.checkpoints.stored import StoredModel, head_weights, split_options

HOST1_ONLY_OPTIONS = ("use_pbc", "use_pbc_single", "otf_graph")
"""Options of the 1.10 backbone that the core has no use for (graphs come with every structure)."""


def model_settings(model_config: Mapping) -> tuple[dict, dict[str, str]]:
    """The backbone's settings and ``{head: role}`` of a 1.10 LEIGNN model config (``heads`` empty for
    the plain ``leignn`` model, whose parameter names are the core's)."""
    if model_config.get("name") != "hydra":
        return {k: v for k, v in model_config.items() if k != "name"}, {}
    backbone = {k: v for k, v in model_config["backbone"].items() if k != "model"}
    return backbone, head_roles(model_config["heads"], 1) or {}


def ema_shadow(checkpoint: Mapping, path: Path) -> list[torch.Tensor] | None:
    """The EMA weights fairchem's trainer would put in (``optim.ema_decay`` set and ``ema`` stored), in
    the order of the stored model's parameters."""
    ema = checkpoint.get("ema")
    if not ema or not (checkpoint["config"].get("optim") or {}).get("ema_decay"):
        return None
    shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in shadow):
        raise CheckpointError(f"{path}: its 'ema' entry holds no list of tensors under 'shadow_params'")
    return list(shadow)


def read_format1(checkpoint: Mapping, path: Path, use_ema: bool = True) -> StoredModel:
    """The :class:`StoredModel` of a 1.10 checkpoint already read by ``read_checkpoint`` (config, state
    dict, normalizers and references checked)."""
    model_config = checkpoint["config"]["model"]
    if not is_leignn_config(model_config, 1):
        raise CheckpointError(f"{path} holds no LEIGNN model")
    settings, heads = model_settings(model_config)
    options, graph = split_options(settings, drop=HOST1_ONLY_OPTIONS)
    state = head_weights({k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}, heads)
    normalizers = {key: (value["mean"], value["rmsd"]) for key, value in stored_normalizers(checkpoint, path).items()}
    return StoredModel(options=options, graph=graph, state=state, ema_shadow=ema_shadow(checkpoint, path) if use_ema else None, normalizers=normalizers,
                       references=stored_element_references(checkpoint, path),
                       use_pbc=bool(settings.get("use_pbc", True)), kind="fairchem 1.10 checkpoint")
