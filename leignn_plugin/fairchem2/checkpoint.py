"""fairchem 2.x inference checkpoints of LEIGNN: checked safely, then loaded by fairchem's predict unit.

fairchem's ``load_predict_unit`` unpickles the whole file (``weights_only=False``). Before it does, the
file is read here with the project's one loader, weights-only, allowing only the classes an inference
checkpoint holds (the ``MLIPInferenceCheckpoint`` dataclass and OmegaConf containers): a crafted file
is refused before fairchem touches it, and a file that is not a LEIGNN model gets one line saying what
it is (a fairchem 1.x checkpoint names the converter).
"""

from __future__ import annotations

import collections
import typing
from pathlib import Path

from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode

from leignn_plugin.adapters.checkpoint_files import CheckpointError, check_state_dict, load_torch_file

INFERENCE_GLOBALS = (MLIPInferenceCheckpoint, DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode,
                     typing.Any, dict, list, int, collections.defaultdict)
LEIGNN_BACKBONES = ("leignn_backbone", "leignn_plugin.fairchem2.models.LEIGNNBackbone")


def read_inference_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> MLIPInferenceCheckpoint:
    """The 2.x inference checkpoint at ``path``, refused with one line unless it is a LEIGNN model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    saved = load_torch_file(path, trusted=trust_checkpoint, extra_globals=INFERENCE_GLOBALS)
    if isinstance(saved, dict) and "config" in saved and "state_dict" in saved:
        raise CheckpointError(f"{path} is a fairchem 1.x checkpoint; convert it first with "
                              f"leignn-fairchem2 convert {path} OUT.pt")
    if not isinstance(saved, MLIPInferenceCheckpoint):
        raise CheckpointError(f"{path} is not a fairchem 2.x inference checkpoint (it holds a "
                              f"{type(saved).__name__})")
    config = saved.model_config
    config = OmegaConf.to_container(config) if OmegaConf.is_config(config) else config
    backbone = ((config or {}).get("backbone") or {}).get("model")
    if backbone not in LEIGNN_BACKBONES:
        raise CheckpointError(f"{path} holds a '{backbone}' backbone, not LEIGNN "
                              f"(expected {' or '.join(LEIGNN_BACKBONES)})")
    check_state_dict(saved.model_state_dict, path)
    return saved


def load_predict_unit(path: str | Path, device: str = "cpu", inference_settings: object = "batch",
                      trust_checkpoint: bool = False):
    """fairchem's predict unit of the LEIGNN checkpoint ``path`` (checked first, see above).

    ``inference_settings``: fairchem's preset name or an ``InferenceSettings``; ``batch`` (the default
    here) runs the model eagerly, while fairchem's ``default`` compiles it, which on CPU costs about a
    minute at the first call. A conservative model gives the stress without any setting (its backbone
    adds the task).
    """
    from fairchem.core.units.mlip_unit import load_predict_unit as fairchem_load_predict_unit

    read_inference_checkpoint(path, trust_checkpoint)
    return fairchem_load_predict_unit(str(path), inference_settings=inference_settings, device=device)


