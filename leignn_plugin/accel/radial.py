"""Radial features without subnormal numbers, written in place for inference (CPU speed path).

Far-away Gaussians (and high-degree Bernstein terms) evaluate to subnormal numbers, and CPUs
multiply subnormals through a slow microcode path, several times slower on the radial matmul of an
OC20 batch (benchmarks/README.md, "What was optimised"). The flush also makes the features banded, which
``bands.py`` exploits.
"""

from __future__ import annotations

import torch

from leignn_plugin.core.radial import RadialEmbedding


def flush_threshold(dtype: torch.dtype) -> float:
    """sqrt(smallest normal number): 1e-19 in float32, 1e-154 in float64."""
    return torch.finfo(dtype).tiny ** 0.5


def flush_tiny(values: torch.Tensor) -> torch.Tensor:
    """Zero the entries smaller in magnitude than :func:`flush_threshold` of their dtype.

    The threshold also keeps their products with weights normal; what it removes lies some 12
    orders of magnitude below the float32 rounding of any filter value, so results are unchanged.
    """
    return torch.where(values.abs() < flush_threshold(values.dtype), 0.0, values)


def flush_tiny_(values: torch.Tensor, rows_per_chunk: int = 1 << 18) -> torch.Tensor:
    """:func:`flush_tiny` in place, a block of rows at a time (no full-size temporaries)."""
    threshold = flush_threshold(values.dtype)
    for block in torch.split(values, rows_per_chunk):
        block.masked_fill_(block.abs() < threshold, 0.0)
    return values


class FlushedRadialEmbedding(RadialEmbedding):
    """:class:`RadialEmbedding` with subnormal entries zeroed; without autograd, one output tensor
    is written in place (large MD systems: E x (R + 1) values are gigabytes)."""

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return flush_tiny(super().forward(distance))  # [E, R + 1]
        t = distance / self.cutoff  # [E]
        env = self.envelope(t).unsqueeze(-1)  # [E, 1]
        basis = self.basis(t)  # [E, R]
        features = basis.new_empty((basis.shape[0], basis.shape[1] + 1))  # [E, R + 1]
        torch.mul(basis, env, out=features[:, :-1])
        features[:, -1:] = env
        del basis
        return flush_tiny_(features)
