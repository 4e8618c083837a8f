"""Node-wise updates: scalars and vectors of each atom exchange information, no neighbours involved.

Two variants share one parameter layout (``vec_proj``: F -> 2F without bias, ``scalar_mlp``:
2F -> F -> 3F), so the paper's ablation swaps one for the other in a config:

- ``nmu``, the paper's node-wise mixing update (LEIGNN, Vanilla + NMU);
- ``painn``, PaiNN's update (the paper's Vanilla).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leignn_plugin.core.activation import mlp

NODE_UPDATES = ("nmu", "painn")


class _NodeUpdate(nn.Module):
    """The shared parameters: [U v, V v] = W_u v and [a, b, gamma] = MLP_u([x, ||V v||])."""

    def __init__(self, hidden_channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.vec_proj = nn.Linear(hidden_channels, 2 * hidden_channels, bias=False)
        self.scalar_mlp = mlp([2 * hidden_channels, hidden_channels, 3 * hidden_channels], final_activation=False)
        self.inv_sqrt_2 = 1.0 / math.sqrt(2.0)
        self.eps = eps

    def projections(self, x: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """U v, V v [N, 3, F] and the three [N, F] outputs of the scalar MLP."""
        f = self.hidden_channels
        uv, vv = torch.split(self.vec_proj(v), f, dim=-1)  # [N, 3, F] each
        square = torch.sum(vv * vv, dim=1)  # [N, F]
        # at least float32: under float16 autocast eps rounds to zero and sqrt(0) has an infinite gradient
        vv_norm = torch.sqrt(square.to(torch.promote_types(square.dtype, torch.float32)) + self.eps)  # [N, F]
        a, b, gamma = torch.split(self.scalar_mlp(torch.cat([x, vv_norm], dim=-1)), f, dim=-1)  # [N, F] each
        return uv, vv, a, b, gamma


class NodeMixingUpdate(_NodeUpdate):
    """The paper's NMU: x <- x + b / sqrt(2) + x * tanh(gamma);  v <- v + a * U v."""

    def forward(self, x: torch.Tensor, v: torch.Tensor, update_vectors: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, F], v [N, 3, F]. With ``update_vectors=False`` v is returned unchanged (last layer)."""
        uv, _, a, b, gamma = self.projections(x, v)
        x = x + b * self.inv_sqrt_2 + x * torch.tanh(gamma)  # [N, F]
        if update_vectors:
            v = v + a.unsqueeze(1) * uv  # [N, 3, F]
        return x, v


class PaiNNUpdate(_NodeUpdate):
    """PaiNN's update: x <- x + (a + b * <U v, V v> / sqrt(F)) / sqrt(2);  v <- v + c * U v.

    (a, b, c are the scalar MLP's three outputs in the order the parameters are laid out.)
    """

    def forward(self, x: torch.Tensor, v: torch.Tensor, update_vectors: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        uv, vv, a, b, c = self.projections(x, v)
        inner = torch.sum(uv * vv, dim=1) / math.sqrt(self.hidden_channels)  # [N, F]
        x = x + (a + b * inner) * self.inv_sqrt_2  # [N, F]
        if update_vectors:
            v = v + c.unsqueeze(1) * uv  # [N, 3, F]
        return x, v


def node_update(name: str, hidden_channels: int) -> _NodeUpdate:
    """The update block called ``name`` (``nmu`` or ``painn``)."""
    if name not in NODE_UPDATES:
        raise ValueError(f"unknown node_update '{name}': choose one of {', '.join(NODE_UPDATES)}")
    return NodeMixingUpdate(hidden_channels) if name == "nmu" else PaiNNUpdate(hidden_channels)
