"""What a LEIGNN checkpoint of either host holds, in the core potential's terms, and the registry of
checkpoint formats the installed host can unpickle.

A format reader turns a file's unpickled object into a :class:`StoredModel`: the representation and
graph options, the weights under the core potential's names (``backbone.*``, ``energy_head.*``,
``force_head.*``), the EMA weights by the same names when kept, and the de-normalization of each
output. The fairchem 1.10 format (a dict of plain tensors) is read host-free (``format1.py``), so both
environments load it; a host whose format needs its own classes to unpickle (fairchem 2.x's
``MLIPInferenceCheckpoint``) registers a reader on import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from leignn_plugin.adapters.options import GRAPH_OPTIONS


@dataclass
class StoredModel:
    """A LEIGNN checkpoint in the core potential's terms.

    options: the representation's options (``LEIGNNPotential(**options)``).
    graph: the graph options (``adapters.options.GRAPH_OPTIONS``) given in the file.
    state / ema: weights by the core potential's names (``ema`` None when the file keeps none or it is
        not to be used); ``ema_shadow`` instead: EMA weights in the order of the stored parameters (1.10).
    normalizers: ``{output: (mean, rmsd)}`` as 0-d tensors: value = model output * rmsd + mean.
    references: ``{output: values}``, a 1-d tensor indexed by atomic number, added summed per structure.
    use_pbc: False when the model was trained to ignore periodicity (1.10's ``use_pbc: false``).
    kind: what the file is, for messages (``fairchem 1.10 checkpoint``, ...).
    """

    options: dict[str, Any]
    graph: dict[str, Any]
    state: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    ema_shadow: list[torch.Tensor] | None = None
    normalizers: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    references: dict[str, torch.Tensor] = field(default_factory=dict)
    use_pbc: bool = True
    kind: str = "checkpoint"


def split_options(settings: Mapping, drop: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """A backbone's settings as (representation options, graph options), without the keys in ``drop``
    (1.10's ``graph_method: fairchem`` becomes ``vesin``: the same edges, and it exists in every host)."""
    options = {k: v for k, v in settings.items() if k not in drop}
    graph = {k: options.pop(k) for k in list(options) if k in GRAPH_OPTIONS}
    if graph.get("graph_method") == "fairchem":
        graph["graph_method"] = "vesin"
    return options, graph


def head_weights(state: Mapping[str, torch.Tensor], heads: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """A hydra's weights (``backbone.*``, ``output_heads.<head>.<module>.*``) by the core potential's
    names: each LEIGNN head holds one module, ``energy_head`` or ``force_head``, named as in the core."""
    out = {}
    for key, value in state.items():
        for head in heads:
            prefix = f"output_heads.{head}."
            if key.startswith(prefix):
                key = key.removeprefix(prefix)
                break
        out[key] = value
    return out


Reader = Callable[[object, Path, bool, bool], "StoredModel | None"]


@dataclass(frozen=True)
class HostFormat:
    """A checkpoint format a host adds: the classes its files need unpickled (allowed to the weights-only
    loader) and the reader of the unpickled object (None when the object is not of this format)."""

    name: str
    allowed_globals: tuple[Any, ...]
    read: Reader


HOST_FORMATS: list[HostFormat] = []


def register_format(fmt: HostFormat) -> None:
    """Add a host's checkpoint format (once per name)."""
    if all(known.name != fmt.name for known in HOST_FORMATS):
        HOST_FORMATS.append(fmt)

