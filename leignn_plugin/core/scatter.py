"""Segment reductions with torch's own index ops (the plugin needs no torch_scatter)."""

from __future__ import annotations

import torch


def segment_sum(src: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum rows of ``src`` [M, ...] into ``num_segments`` rows by ``index`` [M]."""
    out = src.new_zeros((num_segments, *src.shape[1:]))  # [S, ...]
    return out.index_add_(0, index, src)


def segment_mean(src: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of the rows of ``src`` [M, ...] in each of ``num_segments`` segments (0 for empty ones)."""
    total = segment_sum(src, index, num_segments)  # [S, ...]
    count = torch.bincount(index, minlength=num_segments).clamp(min=1).to(src.dtype)  # [S]
    return total / count.view(-1, *([1] * (src.dim() - 1)))
