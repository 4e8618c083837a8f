"""The one loader of LEIGNN checkpoints for inference: a fairchem 1.10 checkpoint or a fairchem 2.x
inference checkpoint becomes the same core potential, in either environment that can read the format.

The file is read weights-only by the project's one reader (``adapters.checkpoint_files``), allowing the
classes a registered host format needs; its :class:`StoredModel` (``stored.py``) gives the core
potential, its weights (EMA when the host would use them) and how outputs become physical units, as
each host's trainer does it: value = output * rmsd + mean, then plus the sum of the per-element
references of the structure's atoms (stress: scaled by the energy's rmsd when it has no normalizer of
its own). The speed paths are chosen once here, for the device (``accel.prepare_for_device``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from leignn_plugin.accel import prepare_for_device
from leignn_plugin.adapters.checkpoint_files import (
    CheckpointError,
    check_state_dict,
    check_weight_names,
    load_torch_file,
    weights_mismatch,
)
from leignn_plugin.adapters.checkpoint_files import read_checkpoint as read_format1_file
from leignn_plugin.adapters.options import GRAPH_OPTIONS, set_graph_options
from leignn_plugin.checkpoints.format1 import read_format1
from leignn_plugin.checkpoints.names import is_leignn_config
from leignn_plugin.checkpoints.stored import HOST_FORMATS, StoredModel
from leignn_plugin.core.elements import is_record_key
from leignn_plugin.core.model import LEIGNNPotential
from leignn_plugin.core.options import OptionError, check_values
from leignn_plugin.graph import DEFAULT_MIN_DISTANCE

GRAPH_DEFAULTS = {"enforce_max_neighbors_strictly": False, "graph_method": "vesin", "speed_paths": True,
                  "min_distance": DEFAULT_MIN_DISTANCE}
INFERENCE_CHECKPOINT = "fairchem.core.units.mlip_unit.api.inference.MLIPInferenceCheckpoint"


@dataclass
class LoadedPotential:
    """A LEIGNN ready for inference (the core potential, eval mode) and what turns its outputs into
    physical units. ``model.backbone`` carries the graph options (``graph_method``, ``min_distance``, ...)."""

    path: Path
    model: LEIGNNPotential
    normalizers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    references: dict[str, torch.Tensor]
    used_ema: bool
    use_pbc: bool
    kind: str

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def conservative(self) -> bool:
        return self.backbone.conservative

    @property
    def has_stress(self) -> bool:
        return self.backbone.conservative and self.backbone.regress_stress

    @property
    def trained_elements(self) -> tuple[int, ...] | None:
        """The atomic numbers of the training data (None for checkpoints written before the record)."""
        return self.backbone.trained_elements

    def scale(self, key: str) -> tuple[float, float]:
        """(mean, rmsd) of output ``key``; stress without its own: (0, the energy's rmsd)."""
        if key in self.normalizers:
            mean, rmsd = self.normalizers[key]
            return float(mean), float(rmsd)
        if key == "stress" and "energy" in self.normalizers:
            return 0.0, float(self.normalizers["energy"][1])
        return 0.0, 1.0

    def denormalize(self, key: str, value: torch.Tensor, numbers: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """``value`` (per structure [B, ...] or per atom [N, ...]) in physical units: de-normalized, then
        plus the element references summed over each structure's atoms ``numbers`` [N] (``batch`` [N])."""
        if key in self.normalizers:
            mean, rmsd = self.normalizers[key]
            value = value * rmsd.to(value.device) + mean.to(value.device)
        elif key == "stress" and "energy" in self.normalizers:
            value = value * self.normalizers["energy"][1].to(value.device, value.dtype)
        refs = self.references.get(key)
        if refs is not None:
            per_atom = refs.to(value.device, torch.float64)[numbers]  # [N]
            offset = torch.zeros(value.shape[0], dtype=torch.float64, device=value.device).index_add(
                0, batch, per_atom)  # [B]
            value = value + offset.to(value.dtype).view(-1, *([1] * (value.dim() - 1)))
        return value


def _read(path: Path, trust_checkpoint: bool) -> object:
    """The unpickled file, allowing the classes of every registered host format."""
    allowed = tuple(g for fmt in HOST_FORMATS for g in fmt.allowed_globals)
    try:
        return load_torch_file(path, trusted=trust_checkpoint, extra_globals=allowed)
    except CheckpointError as err:
        if INFERENCE_CHECKPOINT in str(err) or "fairchem.core.units" in str(err):
            raise CheckpointError(
                f"{path} is a fairchem 2.x inference checkpoint, which this environment cannot read (it has no "
                "fairchem-core 2.x); load it where fairchem-core 2.x is installed (make install-fairchem2)") from None
        raise


def read_stored_model(path: str | Path, trust_checkpoint: bool = False, use_ema: bool = True) -> StoredModel:
    """The :class:`StoredModel` of the LEIGNN checkpoint at ``path``, whichever host wrote it; anything
    else is one :class:`CheckpointError` line naming the file and what it holds."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    saved = _read(path, trust_checkpoint)
    if isinstance(saved, Mapping):  # fairchem 1.x's format: anything else in a dict is refused there
        checkpoint = read_format1_file(path, trust_checkpoint, lambda config: is_leignn_config(config, 1),
                                       loaded=saved)
        return read_format1(checkpoint, path, use_ema)
    for fmt in HOST_FORMATS:
        stored = fmt.read(saved, path, trust_checkpoint, use_ema)
        if stored is not None:
            return stored
    raise CheckpointError(f"{path} is not a LEIGNN checkpoint of fairchem 1.10 or 2.x (it holds a "
                          f"{type(saved).__name__})")


def _ema_by_name(stored: StoredModel, model: LEIGNNPotential, path: Path) -> dict[str, torch.Tensor] | None:
    if stored.ema is not None:
        return stored.ema
    if stored.ema_shadow is None:
        return None
    parameters = [name for name in stored.state if name in dict(model.named_parameters())]
    if len(stored.ema_shadow) != len(parameters):
        raise CheckpointError(f"{path}: the EMA holds {len(stored.ema_shadow)} tensors but the model has "
                              f"{len(parameters)} parameters")
    return dict(zip(parameters, stored.ema_shadow))


def build_core(stored: StoredModel, path: Path) -> tuple[LEIGNNPotential, bool]:
    """The core potential of ``stored`` with its weights (EMA put in when kept), on CPU in float32, and
    whether the EMA weights were used."""
    graph = {**GRAPH_DEFAULTS, **stored.graph}
    try:
        check_values(graph, GRAPH_OPTIONS)
        model = LEIGNNPotential(**stored.options)
        set_graph_options(model.backbone, **graph)
    except (OptionError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model from its config ({err})") from None
    check_state_dict(stored.state, path)
    check_weight_names(model, stored.state, path, is_record_key)
    try:
        model.load_state_dict(stored.state, strict=False)
    except RuntimeError as err:
        raise weights_mismatch(err, path) from None
    ema = _ema_by_name(stored, model, path)
    if ema:
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in ema.items():
                if name not in parameters:
                    continue
                if value.shape != parameters[name].shape:
                    raise CheckpointError(f"{path}: EMA tensor of shape {tuple(value.shape)} does not fit the "
                                          f"parameter {name} of shape {tuple(parameters[name].shape)}")
                parameters[name].copy_(value)
    return model, bool(ema)


def load_potential(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    use_ema: bool = True,
    trust_checkpoint: bool = False,
) -> LoadedPotential:
    """The LEIGNN of the checkpoint at ``path`` (fairchem 1.10 or 2.x) on ``device`` in ``dtype``, in eval
    mode, with the speed paths for ``device`` when its ``speed_paths`` option is on. ``trust_checkpoint``
    loads a file that needs full unpickling (only for files from a source you trust)."""
    path = Path(path)
    device = torch.device(device)
    stored = read_stored_model(path, trust_checkpoint, use_ema)
    model, used_ema = build_core(stored, path)
    model.backbone.element_record.source = str(path)
    model = model.to(device=device, dtype=dtype).eval()
    if model.backbone.speed_paths:
        prepare_for_device(model, device)
    normalizers = {key: (mean.to(device), rmsd.to(device)) for key, (mean, rmsd) in stored.normalizers.items()}
    references = {key: values.to(device) for key, values in stored.references.items()}
    return LoadedPotential(path=path, model=model, normalizers=normalizers, references=references,
                           used_ema=used_ema, use_pbc=stored.use_pbc, kind=stored.kind)
