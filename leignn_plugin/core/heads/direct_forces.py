"""Direct force head: F_i = W_F v_i, a bias-free map of the F vector channels to one vector."""

from __future__ import annotations

import torch
from torch import nn


class DirectForceHead(nn.Module):
    """Rotation-equivariant forces read off the node vectors (the paper's choice, one matmul)."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_channels, 1, bias=False)
        nn.init.xavier_uniform_(self.proj.weight)

    def forward(self, v: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """v [N, 3, F] -> forces [N, 3]."""
        forces = self.proj(v.to(self.proj.weight.dtype))  # [N, 3, 1]
        return forces.squeeze(-1).to(out_dtype)  # [N, 3]
