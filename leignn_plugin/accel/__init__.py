"""Speed paths for the core model, swapped in by one call and tested against the plain blocks.

``accelerate(model, cpu_paths)`` / ``restore_plain(model)`` switch a model between the core's plain
blocks and the fast ones (same parameters); ``prepare_for_device`` is what host adapters call: the
CPU paths on CPU, where they were measured faster, and off elsewhere. Edge chunks
(``set_edge_chunk_size``) and the compiled inference path (``compile_for_inference``) build on them.
"""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.accel.chunked import chunk_size_for, edge_chunks, set_edge_chunk_size
from leignn_plugin.accel.compiled import compile_for_inference, use_dense_sums
from leignn_plugin.accel.swap import accelerate, is_accelerated, restore_plain


def prepare_for_device(model: nn.Module, device: torch.device) -> None:
    """Speed paths for a pass on ``device``: with the CPU paths on CPU, without them elsewhere.

    A no-op while the device type stays the same, so adapters call it at every forward pass.
    """
    if model.__dict__.get("_accel_device") == device.type:
        return
    accelerate(model, cpu_paths=device.type == "cpu")
    model.__dict__["_accel_device"] = device.type


__all__ = [
    "accelerate",
    "chunk_size_for",
    "compile_for_inference",
    "edge_chunks",
    "is_accelerated",
    "prepare_for_device",
    "restore_plain",
    "set_edge_chunk_size",
    "use_dense_sums",
]
