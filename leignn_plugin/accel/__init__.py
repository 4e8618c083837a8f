"""Speed paths for the core model, swapped in by one call and tested against the plain blocks.

``accelerate(model, cpu_paths)`` / ``restore_plain(model)`` switch a model between the core's plain
blocks and the fast ones (same parameters); ``prepare_for_device`` chooses them for a device: the
CPU paths on CPU, where they were measured faster, and off elsewhere. It is applied when a model is
built, moved or loaded (``adapters.speed``, ``checkpoints.load_potential``), never inside ``forward``. Edge chunks
(``set_edge_chunk_size``) and the compiled inference path (``compile_for_inference``) build on them.
"""

from __future__ import annotations

import torch
from torch import nn

from leignn_plugin.accel.chunked import chunk_size_for, edge_chunks, set_edge_chunk_size
from leignn_plugin.accel.compiled import compile_for_inference, use_dense_sums
from leignn_plugin.accel.swap import accelerate, is_accelerated, restore_plain


def prepare_for_device(model: nn.Module, device: torch.device) -> None:
    """Speed paths for ``device``: with the CPU paths on CPU, without them elsewhere (a no-op while
    the device type stays the one they were chosen for)."""
    if model.__dict__.get("_accel_device") == device.type and is_accelerated(model):
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
