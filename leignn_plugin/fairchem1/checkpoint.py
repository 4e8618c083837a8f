"""fairchem 1.10's own models from LEIGNN checkpoints: the registered classes for a model config, and
the ``LEIGNN`` / ``HydraModel`` with its weights for ``main.py``'s checkpoint check and the hydra
conversion (inference everywhere goes through ``leignn_plugin.checkpoints.load_potential``).

As fairchem's trainer does for ``main.py --checkpoint``: the model is built from ``config["model"]``,
the state dict is matched for DDP's ``module.`` prefix and the EMA weights replace the raw ones when
the trainer uses them (``optim.ema_decay`` set and ``ema`` stored).

Loading is safe by default: the file is unpickled with ``weights_only=True`` (tensors, containers,
numbers and strings, which is all a checkpoint written by fairchem 1.10's trainer holds), so a
crafted file cannot run code. A file that needs more is refused with one line naming what it needs;
``trust_checkpoint=True`` (``--trust-checkpoint`` on the command lines) loads it with full unpickling, only
for files from a source you trust.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fairchem.core.common.utils import load_state_dict, match_state_dict
from fairchem.core.models.base import HydraModel
from torch import nn

from leignn_plugin.adapters.checkpoint_files import (
    CheckpointError,
    check_state_dict,
    check_weight_names,
    copy_ema,
    not_leignn,
    weights_mismatch,
)
from leignn_plugin.adapters.checkpoint_files import read_checkpoint as read_checkpoint_file
from leignn_plugin.checkpoints.names import is_leignn_config, role_of
from leignn_plugin.core.elements import is_record_key
from leignn_plugin.fairchem1.models import (
    LEIGNN,
    LEIGNNBackbone,
    LEIGNNConservativeHead,
    LEIGNNDirectForceHead,
    LEIGNNEnergyHead,
)

CLASSES = {"leignn": LEIGNN, "backbone": LEIGNNBackbone, "energy": LEIGNNEnergyHead,
           "forces": LEIGNNDirectForceHead, "conservative": LEIGNNConservativeHead}
"""fairchem 1.10's class for each role a name may stand for (``checkpoints.names``)."""


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False, require_leignn: bool = True) -> dict:
    """The checkpoint at ``path`` (see :func:`leignn_plugin.adapters.checkpoint_files.read_checkpoint`),
    with ``require_leignn`` refusing any model this registry does not resolve to LEIGNN."""
    return read_checkpoint_file(path, trust_checkpoint, is_leignn if require_leignn else None)


def leignn_class(name: object) -> type | None:
    """The LEIGNN class ``name`` stands for (a registered short name or an exact dotted path, current or
    legacy; compared as strings by ``checkpoints.names``, never imported); None for any other name."""
    role = role_of(name, 1)
    return CLASSES[role] if role else None


def is_leignn(model_config: Mapping) -> bool:
    """Whether the config names LEIGNN, or a hydra whose backbone and every head are LEIGNN's."""
    return is_leignn_config(model_config, 1)


def leignn_model(checkpoint: dict, path: Path, use_ema: bool = True) -> tuple[nn.Module, bool]:
    """The LEIGNN (or hydra on its backbone) of ``checkpoint`` with its weights, on CPU in float32,
    and whether the EMA weights were put in (``use_ema``, when the trainer kept them)."""
    config = checkpoint["config"]
    model_config = dict(config["model"])
    if not is_leignn(model_config):
        raise CheckpointError(not_leignn(path, model_config))
    # A hydra's finetune_config names the checkpoint fine-tuning started from: fairchem's HydraModel
    # would unpickle it in full, then discard it, since this config gives the backbone and the heads
    # and the state dict holds every weight. The model is the same without it, and nothing is read.
    model_config.pop("finetune_config", None)
    name = model_config.pop("name")
    try:
        model = (HydraModel if name == "hydra" else leignn_class(name))(**model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model from its config ({err})") from None

    check_state_dict(checkpoint["state_dict"], path)
    state = match_state_dict(model.state_dict(), checkpoint["state_dict"])
    check_weight_names(model, state, path, is_record_key)
    try:
        load_state_dict(model, state, strict=True)
    except RuntimeError as err:
        raise weights_mismatch(err, path) from None

    ema_state = checkpoint.get("ema")
    used_ema = bool(use_ema and ema_state and (config.get("optim") or {}).get("ema_decay"))
    if used_ema:
        copy_ema(model, ema_state, path)
    return model, used_ema
