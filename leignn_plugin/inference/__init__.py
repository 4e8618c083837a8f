"""Inference helpers: exact edge-chunked evaluation for large systems and a torch.compile path."""

from __future__ import annotations

from leignn_plugin.inference.chunked import chunk_size_for, edge_chunks, set_edge_chunk_size
from leignn_plugin.inference.compiled import compile_for_inference

__all__ = ["chunk_size_for", "compile_for_inference", "edge_chunks", "set_edge_chunk_size"]
